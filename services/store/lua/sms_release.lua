--! uses: send_guard, fixed_window, sms_code
-- Undo a reservation whose SMS was not sent, if it still stands (its guard holds its token):
-- lift the guard, put back the code it replaced, give back its place in the hourly and daily
-- counts. Safe to repeat: a reservation is released at most once.
-- KEYS: guard, code, hourly count, daily count. ARGV: guard token, mac, then the replaced
-- code's mac, tries and expiry (ms) if there was one.
if not send_guard_release(KEYS[1], ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[2], 'mac') == ARGV[2] then
    redis.call('DEL', KEYS[2])
    if ARGV[3] then sms_code_put_back(KEYS[2], ARGV[3], ARGV[4], ARGV[5]) end
end
for i = 3, 4 do fixed_window_refund(KEYS[i], 1) end
return 1
