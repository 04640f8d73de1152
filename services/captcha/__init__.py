"""CAPTCHAs: the text kept in Redis, the image and audio renderers, and proof of work."""
