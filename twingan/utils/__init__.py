"""Small helpers shared by several parts of the toolkit (no model, no training)."""
