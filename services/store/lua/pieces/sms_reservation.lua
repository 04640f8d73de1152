-- A mobile's reservation for one send (uses pieces send_guard, fixed_window, sms_code): its
-- resend guard, its hourly and daily caps and its new code. All keys share the {mobile} hash
-- tag: one slot, standalone or Cluster.
-- keys: guard, code, hourly count, daily count. argv: guard token, interval, mac, code ttl,
-- hourly limit, hour, daily limit, day.

-- {refusal (1 guard, 2 hourly, 3 daily), ms until it lifts} while the guard stands or a cap
-- is full, else nil.
local function sms_reservation_refusal(keys, argv)
    local ms_left = send_guard_refusal(keys[1], tonumber(argv[2]))
    if ms_left then return {1, ms_left} end
    for i = 3, 4 do
        ms_left = fixed_window_refusal(keys[i], tonumber(argv[2 * i - 1]), tonumber(argv[2 * i]), 1)
        if ms_left then return {i - 1, ms_left} end
    end
    return nil
end

-- Take it (check sms_reservation_refusal first): set the guard (so of any number of
-- concurrent requests exactly one passes), count the send, store the new code's HMAC with a
-- fresh attempt counter. Returns the code it replaced (sms_code_replace).
local function sms_reservation_take(keys, argv)
    redis.call('SET', keys[1], argv[1], 'EX', tonumber(argv[2]))
    local replaced = sms_code_replace(keys[2], argv[3], argv[4])
    for i = 3, 4 do fixed_window_count(keys[i], tonumber(argv[2 * i]), 1) end
    return replaced
end

-- Undo a reservation whose SMS was not sent, if it still stands (its guard holds its token):
-- lift the guard, put back the code it replaced, give back its place in the hourly and daily
-- counts. Safe to repeat. argv: guard token, mac, then the replaced code's mac, tries and
-- expiry (ms) if there was one. Returns 1 if it stood.
local function sms_reservation_release(keys, argv)
    if not send_guard_release(keys[1], argv[1]) then return 0 end
    if redis.call('HGET', keys[2], 'mac') == argv[2] then
        redis.call('DEL', keys[2])
        if argv[3] then sms_code_put_back(keys[2], argv[3], argv[4], argv[5]) end
    end
    for i = 3, 4 do fixed_window_refund(keys[i], 1) end
    return 1
end
