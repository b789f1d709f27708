"""The tracker's HTTP service (``mappa serve``): a JSON API and pages for people, behind
bearer tokens, with an audit trail. See :func:`infra.http.app.create_app`."""
