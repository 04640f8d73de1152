-- Revoke a refresh-token family with one of its tokens (current or already rotated), or
-- with none (ARGV[2] empty: the holder of an access token of the family logs out).
-- KEYS: family, index. ARGV: family id, digest presented or ''. Returns 1 if revoked, else 0.
local current = redis.call('HGET', KEYS[1], 'current')
if not current then return 0 end
if ARGV[2] ~= '' and current ~= ARGV[2] and redis.call('HEXISTS', KEYS[1], 'used:' .. ARGV[2]) == 0 then
    return 0
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
