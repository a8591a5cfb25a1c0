from django.apps import AppConfig


class DataAppConfig(AppConfig):
    name = "data_app"
    verbose_name = "Data"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Live streams follow committed session changes: the Session Service sends, never imports us.
        from data_app.live import sessions as live_sessions
        from sessions_app import signals

        signals.session_changed.connect(live_sessions.on_session_changed, dispatch_uid="data_app.live")
        signals.sessions_deleted.connect(live_sessions.on_sessions_deleted, dispatch_uid="data_app.live")
