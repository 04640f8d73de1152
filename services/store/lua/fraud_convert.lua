--! uses: fraud_window
-- A code was verified: take the record of the send that delivered it and count a conversion
-- in each of its segments (current bucket, and the probation round of an elevated one).
-- KEYS: the record (JSON list: counts, state of each segment, in pairs). ARGV: bucket ms,
-- key ttl s. The segment keys come from the record, not from KEYS: read and counted in one
-- step, and they carry the record's {fraud} hash tag, so the script still touches one slot.
-- Returns the number of segments converted (0 without a record).
local record = redis.call('GETDEL', KEYS[1])
if not record then return 0 end
local segment_keys = cjson.decode(record)
local current = math.floor(now_ms / tonumber(ARGV[1]))
for i = 1, #segment_keys, 2 do
    redis.call('HINCRBY', segment_keys[i], 'c:' .. current, 1)
    redis.call('EXPIRE', segment_keys[i], tonumber(ARGV[2]))
    if redis.call('HGET', segment_keys[i + 1], 'state') == 'elevated' then
        redis.call('HINCRBY', segment_keys[i + 1], 'rconv', 1)
    end
end
return #segment_keys / 2
