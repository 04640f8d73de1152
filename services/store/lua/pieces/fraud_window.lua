-- The rolling counts of one fraud segment: a hash with fields s:<bucket> (sends),
-- c:<bucket> (conversions) and g:<bucket> (sends served on conversion credit, address
-- segments only); `now_ms` is the server's clock.

-- Sends, conversions and credited sends in the last `buckets` buckets up to `current`; older
-- buckets are pruned on the way.
local function fraud_window_sums(counts_key, current, buckets)
    local sums = {s = 0, c = 0, g = 0}
    local fields = redis.call('HGETALL', counts_key)
    for i = 1, #fields, 2 do
        local kind, bucket = string.sub(fields[i], 1, 1), tonumber(string.sub(fields[i], 3))
        if bucket and bucket > current - buckets and sums[kind] then
            sums[kind] = sums[kind] + tonumber(fields[i + 1])
        else
            redis.call('HDEL', counts_key, fields[i])
        end
    end
    return sums.s, sums.c, sums.g
end

local now_parts = redis.call('TIME')
local now_ms = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
