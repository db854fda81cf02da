"""The built-in phases and targets, one module per cluster kind or concern (see vmstation.targets)."""
