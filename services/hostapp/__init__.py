"""The host app bridge: this server as a drop-in for a tutorial app (ihome, meiduo, news),
whose user table, password hashes, sessions and CSRF tokens it shares (docs/INTEGRATION.md)."""
