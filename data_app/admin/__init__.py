"""Admin of the data a session stores: the "Data" panel of the session page (overview and plot).

``session_data`` registers the panel into the session admin through the hook sessions_app defines
(``sessions_app.admin.panels``); Django's admin autodiscovery imports this module at start-up.
``summary`` aggregates the chunk index, ``plot`` draws the channels.
"""

from data_app.admin import session_data
from sessions_app.admin import panels

panels.register(session_data.PANEL)
