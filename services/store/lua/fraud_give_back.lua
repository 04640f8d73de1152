-- Give back a send that did not happen (a later limit refused, the provider failed), in every
-- segment it was counted in. KEYS: counts, state of each segment, in pairs, the address
-- first (one {fraud} hash tag). ARGV: the bucket the send was counted in, 1 if it was served
-- on the address's conversion credit. Never creates a key.
local function take_back(key, field)
    if tonumber(redis.call('HGET', key, field) or '0') > 0 then
        redis.call('HINCRBY', key, field, -1)
    end
end
for i = 1, #KEYS, 2 do
    take_back(KEYS[i], 's:' .. ARGV[1])
end
if ARGV[2] == '1' then take_back(KEYS[1], 'g:' .. ARGV[1]) end
take_back(KEYS[2], 'rsends')
return 0
