-- The rolling counts of one fraud segment: a hash with fields s:<bucket> (sends) and
-- c:<bucket> (conversions); `now_ms` is the server's clock.

-- Sends and conversions in the last `buckets` buckets up to `current`; older buckets are
-- pruned on the way.
local function fraud_window_sums(counts_key, current, buckets)
    local sends, conversions = 0, 0
    local fields = redis.call('HGETALL', counts_key)
    for i = 1, #fields, 2 do
        local bucket = tonumber(string.sub(fields[i], 3))
        if bucket and bucket > current - buckets then
            if string.sub(fields[i], 1, 1) == 's' then
                sends = sends + tonumber(fields[i + 1])
            else
                conversions = conversions + tonumber(fields[i + 1])
            end
        else
            redis.call('HDEL', counts_key, fields[i])
        end
    end
    return sends, conversions
end

local now_parts = redis.call('TIME')
local now_ms = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
