"""The operator console: per-minute history of sends, the console's views and actions."""
