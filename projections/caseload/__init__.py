"""The live caseload of each area: who is managed, how, where, and who is due out."""
