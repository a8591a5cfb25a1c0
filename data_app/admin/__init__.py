"""Admin pictures of stored data: the data overview and plot shown on a session's admin page."""
