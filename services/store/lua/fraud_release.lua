-- Give back a send that did not happen (a later limit refused, the provider failed), in every
-- segment it was counted in. KEYS: counts, state of each segment, in pairs (one {fraud} hash
-- tag). ARGV: the bucket the send was counted in. Never creates a key.
local field = 's:' .. ARGV[1]
for i = 1, #KEYS, 2 do
    if tonumber(redis.call('HGET', KEYS[i], field) or '0') > 0 then
        redis.call('HINCRBY', KEYS[i], field, -1)
    end
    if tonumber(redis.call('HGET', KEYS[i + 1], 'rsends') or '0') > 0 then
        redis.call('HINCRBY', KEYS[i + 1], 'rsends', -1)
    end
end
return 0
