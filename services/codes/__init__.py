"""Verification codes: the send path (fraud segments, reservation, admission), receipts."""
