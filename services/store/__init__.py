"""Storage: MySQL, the Redis client, the Redis key schema, the Lua scripts, rate limits."""
