-- Count one unproven login attempt in the rolling window of all logins, and say how many came
-- before it. KEYS[1]: a hash bucket index -> attempts; ARGV: the current bucket, the buckets
-- in a window, the window (s). Buckets older than the window are dropped on the way; the key
-- lives a window past its last attempt. Returns the attempts in the window before this one.
local current, buckets = tonumber(ARGV[1]), tonumber(ARGV[2])
local before = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
    if tonumber(fields[i]) > current - buckets then
        before = before + tonumber(fields[i + 1])
    else
        redis.call('HDEL', KEYS[1], fields[i])
    end
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return before
