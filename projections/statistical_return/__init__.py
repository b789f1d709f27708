"""The 31 March MAPPA statistical return: counting rules, layouts and area reference data."""
