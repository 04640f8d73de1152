--! uses: send_guard, fixed_window, sms_code
-- Reserve a mobile for one send: refuse while its resend guard stands or an hourly/daily cap
-- is full; otherwise set the guard (so of any number of concurrent requests exactly one
-- passes), count the send, and store the new code's HMAC with a fresh attempt counter. All
-- keys share the {mobile} hash tag: one slot, standalone or Cluster.
-- KEYS: guard, code, hourly count, daily count. ARGV: guard token, interval, mac, code ttl,
-- hourly limit, hour, daily limit, day.
-- Returns {0, 0, replaced code (mac, tries, expiry ms) if any} or {refusal (1 guard,
-- 2 hourly, 3 daily), ms until it lifts}.
local interval = tonumber(ARGV[2])
local ms_left = send_guard_refusal(KEYS[1], interval)
if ms_left then return {1, ms_left} end
for i = 3, 4 do
    ms_left = fixed_window_refusal(KEYS[i], tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i]), 1)
    if ms_left then return {i - 1, ms_left} end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', interval)
local replaced = sms_code_replace(KEYS[2], ARGV[3], ARGV[4])
for i = 3, 4 do fixed_window_count(KEYS[i], tonumber(ARGV[2 * i]), 1) end
return {0, 0, unpack(replaced)}
