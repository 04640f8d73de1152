"""HTTP handlers: parse the request, call one service method, write the answer."""
