-- Apply one delivery receipt to its send record, once. KEYS: the send record. ARGV: provider,
-- message id, status, reason, now (s).
-- Returns {0} no such send (expired or not this provider's message), {1} already final (a
-- repeated push: nothing changes), or {2, created_at, channel, mobile, guard token} applied.
local record = redis.call('HMGET', KEYS[1], 'provider', 'message_id', 'status', 'created_at',
    'channel', 'mobile', 'guard_token')
if not record[1] or record[1] ~= ARGV[1] or record[2] ~= ARGV[2] then return {0} end
if record[3] ~= 'sent' then return {1} end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'reason', ARGV[4], 'updated_at', ARGV[5])
return {2, record[4], record[5], record[6] or '', record[7] or ''}
