"""Victim alerts: which victim liaison officers, and which MAPPA co-ordinators, must be told what.

``rules`` holds the pure rules (contract: ``victim-alerts.md``); the projection that stores
each offender's history and persists the alerts it plans lives beside it.
"""
