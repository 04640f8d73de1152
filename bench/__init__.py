"""Side-by-side benchmark of the SMS-code flow: this server vs. the tutorials' Flask design
vs. a naive async handler. Run: .venv/bin/python -m bench.run (see docs/PERFORMANCE.md)."""
