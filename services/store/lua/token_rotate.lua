-- Rotate a refresh token: the presented one (by digest) must be the family's current token.
-- KEYS: family, index. ARGV: family id, digest presented, digest of the new token.
-- Returns 'rotated'; 'reused' when the presented token was already rotated away (the whole
-- family is revoked: someone else holds a copy, RFC 9700 4.14.2); 'unknown' otherwise
-- (no such family, or a token it never issued: nothing changes).
local current = redis.call('HGET', KEYS[1], 'current')
if not current then return 'unknown' end
if current == ARGV[2] then
    redis.call('HSET', KEYS[1], 'current', ARGV[3], 'used:' .. ARGV[2], 1)
    return 'rotated'
end
if redis.call('HEXISTS', KEYS[1], 'used:' .. ARGV[2]) == 1 then
    redis.call('DEL', KEYS[1])
    redis.call('HDEL', KEYS[2], ARGV[1])
    return 'reused'
end
return 'unknown'
