-- Start a refresh-token family, drop index entries of families that have expired, add this
-- one. KEYS: family, index. ARGV: family id, digest of its first token, user id, name,
-- mobile, ttl (the family's whole life: rotation does not extend it).
local now = tonumber(redis.call('TIME')[1])
redis.call('HSET', KEYS[1], 'current', ARGV[2], 'user_id', ARGV[3], 'name', ARGV[4],
    'mobile', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
    if tonumber(entries[i + 1]) <= now then redis.call('HDEL', KEYS[2], entries[i]) end
end
redis.call('HSET', KEYS[2], ARGV[1], now + tonumber(ARGV[6]))
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[6]) then redis.call('EXPIRE', KEYS[2], ARGV[6]) end
return 0
