-- The live sessions of one user, for the device list. KEYS: index. ARGV: the prefix of the
-- user's session keys (they carry the index's {user_id} hash tag: one slot).
-- Returns digest, value, digest, value … of the sessions that still exist; index entries of
-- sessions that no longer do are dropped on the way.
local out = {}
for _, digest in ipairs(redis.call('HKEYS', KEYS[1])) do
    local value = redis.call('GET', ARGV[1] .. digest)
    if value then
        out[#out + 1] = digest
        out[#out + 1] = value
    else
        redis.call('HDEL', KEYS[1], digest)
    end
end
return out
