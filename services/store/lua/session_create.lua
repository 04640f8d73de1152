-- Store a session, drop index entries of sessions that have expired (so the index stays as
-- small as the live sessions), add this one. KEYS: session, index. ARGV: data, ttl, digest.
local now = tonumber(redis.call('TIME')[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
    if tonumber(entries[i + 1]) <= now then redis.call('HDEL', KEYS[2], entries[i]) end
end
redis.call('HSET', KEYS[2], ARGV[3], now + tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 0
