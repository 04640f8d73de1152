-- End the one session of a user whose handle (the first 20 hex digits of SHA-1 over its
-- digest) is ARGV[2], unless it is the session ARGV[3] (the caller's own). KEYS: index.
-- ARGV: the prefix of the user's session keys, handle, digest of the caller's session.
-- Only the user's own index is searched: a handle never reaches another user's session.
-- Returns 1 if a session ended, 0 if none has that handle, -1 if it is the caller's own.
for _, digest in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(redis.sha1hex(digest), 1, 20) == ARGV[2] then
        if digest == ARGV[3] then return -1 end
        redis.call('DEL', ARGV[1] .. digest)
        redis.call('HDEL', KEYS[1], digest)
        return 1
    end
end
return 0
