-- The resend guard of a mobile: a key holding the token of the send that set it, present
-- while the mobile may not be sent another code.

-- The ms until the guard at `key` lifts, or nil if there is none.
local function send_guard_refusal(key, window)
    local ms_left = redis.call('PTTL', key)
    if ms_left == -2 then return nil end
    if ms_left < 0 then ms_left = window * 1000 end
    return ms_left
end

-- Lift the guard if it is still the one `token` set; true if it was.
local function send_guard_release(key, token)
    if redis.call('GET', key) == token then
        redis.call('DEL', key)
        return true
    end
    return false
end
