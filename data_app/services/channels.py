"""Channel expressions (spec §8): the parser lives in the kernel (``rta_core.channels``) so lower
apps use it too; re-exported here for the data service's modules.
"""

from rta_core.channels import MAX_CHANNEL, ChannelSet, parse_channels

__all__ = ["MAX_CHANNEL", "ChannelSet", "parse_channels"]
