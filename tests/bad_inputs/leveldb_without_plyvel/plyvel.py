"""Stands in for a machine without plyvel: importing it fails as a missing package does."""

raise ModuleNotFoundError("No module named 'plyvel'", name="plyvel")
