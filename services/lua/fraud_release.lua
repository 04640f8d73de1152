-- Give back a send that did not happen (another segment or limit refused, the provider
-- failed). KEYS: counts, state. ARGV: the bucket the send was counted in. Never creates a key.
local field = 's:' .. ARGV[1]
if tonumber(redis.call('HGET', KEYS[1], field) or '0') > 0 then
    redis.call('HINCRBY', KEYS[1], field, -1)
end
if tonumber(redis.call('HGET', KEYS[2], 'rsends') or '0') > 0 then
    redis.call('HINCRBY', KEYS[2], 'rsends', -1)
end
return 0
