"""Identity that leaves the server: access tokens (JWT), refresh-token families, signing keys."""
