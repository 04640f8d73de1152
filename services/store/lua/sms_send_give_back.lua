--! uses: fraud_window, fraud_segments, fixed_window, send_guard, sms_code, sms_reservation
-- Give back everything sms_send_reserve.lua took for a send that was not sent, in one step
-- (standalone Redis; on Redis Cluster: limits_refund.lua, sms_release.lua and
-- fraud_give_back.lua in one round trip): the counters' costs, the mobile's reservation if it
-- still stands, and the send's place in its fraud segments.
-- KEYS: the mobile's guard, code, hourly count, daily count; the n counters; the fraud
-- segments' keys in pairs (none: nothing to give back there).
-- ARGV: n; each counter's cost; the fraud bucket and 1 if credited (ignored without fraud
-- keys); the mobile's release arguments (sms_reservation_release).
local n = tonumber(ARGV[1])
fixed_windows_refund({unpack(KEYS, 5, 4 + n)}, {unpack(ARGV, 2, 1 + n)})
local fraud_keys = {unpack(KEYS, 5 + n)}
if #fraud_keys > 0 then fraud_give_back(fraud_keys, ARGV[2 + n], ARGV[3 + n] == '1') end
sms_reservation_release({KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, {unpack(ARGV, 4 + n)})
return 0
