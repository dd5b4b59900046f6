"""The HTTP server: ``create_app(config, services)`` (``sightline.server.app``) over ``Services``
(``sightline.server.services``), with users, sessions, API tokens and role checks in
``sightline.server.auth``, one router per resource in ``sightline.server.routes`` and the operator
console in ``sightline.server.ui``. Importing this package imports nothing else (no app global).

    services = Services.open(ServerConfig(data_dir=Path("/var/lib/sightline")))
    app = create_app(services.config, services)
"""
