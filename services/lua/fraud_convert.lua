--! uses: fraud_window
-- Count a conversion in the current bucket of one segment, and in the probation round of an
-- elevated one. KEYS: counts, state. ARGV: bucket ms, key ttl s.
local current = math.floor(now_ms / tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'c:' .. current, 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
if redis.call('HGET', KEYS[2], 'state') == 'elevated' then
    redis.call('HINCRBY', KEYS[2], 'rconv', 1)
end
return 0
