--! uses: fraud_window, fraud_segments, fixed_window, send_guard, sms_code, sms_reservation, registered_mobile
-- One SMS send's whole reservation in one atomic step, where every key of a send lives on one
-- Redis node (standalone Redis; services/codes/reservation.py). Redis Cluster runs the same
-- pieces as separate steps (fraud_judge.lua, the CAPTCHA's GETDEL, limits_take.lua with
-- sms_reserve.lua); this script decides in the same order and gives the same answers:
--   1. the fraud segments (fraud_judge): a refusal (proof of work, blocked) ends here, the
--      CAPTCHA left unused so the request can repeat with it; a state change stays stored;
--   2. the CAPTCHA, used up whatever its answer: gone or wrong ends here, no limit taken;
--   3. the counters of the send's tier (address, budget, yuan spend) and the mobile's
--      reservation (guard, hourly, daily).
-- Being one step, it checks every limit before it takes any: a refusal counts nothing
-- anywhere (the separate steps take, then give back), and nothing needs to be given back.
--
-- A send that took everything also reads whether its mobile is registered, from the set of
-- registered numbers (registered_mobile; services/accounts/registered.py), if asked: the send
-- then needs no round trip of its own for that question.
--
-- KEYS: CAPTCHA; the mobile's guard, code, hourly count, daily count; the set of registered
-- numbers' ready marker and set; the n counters (address, budget, and with a yuan budget the
-- spend); the fraud segments' keys in pairs (fraud_judge; none when the breaker is off).
-- ARGV: n; the CAPTCHA answer in upper case; the mobile to read in the set of registered
-- numbers ('' not to read it); the mobile's 8 arguments (sms_reservation);
-- for each tier (good, newcomer, poor) the counters' limit, window and cost (3 n each: the
-- budget a tier may use differs); the fraud verdict's 11 arguments (fraud_judge) if any.
-- Returns {verdict (fraud_judge's reply, {} without segments), CAPTCHA (-1 not reached,
-- 0 right, 1 gone, 2 wrong), counters ({} not reached, else limits_take.lua's reply), the
-- mobile's ({} not reached, else sms_reserve.lua's reply), registered (1, 0, or -1: unknown
-- or not read)}. Only a reply with every step at 0 took anything.
local n = tonumber(ARGV[1])
local mobile_keys = {KEYS[2], KEYS[3], KEYS[4], KEYS[5]}
local counter_keys = {unpack(KEYS, 8, 7 + n)}
local fraud_keys = {unpack(KEYS, 8 + n)}
local mobile_argv = {unpack(ARGV, 4, 11)}
local fraud_argv = {unpack(ARGV, 12 + 9 * n)}

local verdict, elevated, tier = {}, false, 0
if #fraud_keys > 0 then
    verdict, elevated = fraud_judge(fraud_keys, fraud_argv)
    if verdict[1] ~= 0 then return {verdict, -1, {}, {}, -1} end
    tier = verdict[4]
end
-- A plain comparison, not a constant-time one: GETDEL gives each CAPTCHA exactly one guess,
-- whatever its answer, so the time a comparison takes can tell an attacker nothing about an
-- answer it could still use. (The stored text is of the ASCII alphabet, so string.upper
-- matches Python's str.upper of it; the answer comes upper-cased by Python.)
local stored = redis.call('GETDEL', KEYS[1])
if not stored then return {verdict, 1, {}, {}, -1} end
if string.upper(stored) ~= ARGV[2] then return {verdict, 2, {}, {}, -1} end

local first = 12 + 3 * n * tier
local counter_argv = {unpack(ARGV, first, first + 3 * n - 1)}
local counters = fixed_windows_refusal(counter_keys, counter_argv) or {0, 0}
local mobile = sms_reservation_refusal(mobile_keys, mobile_argv) or {0, 0}
if counters[1] ~= 0 or mobile[1] ~= 0 then return {verdict, 0, counters, mobile, -1} end
if #fraud_keys > 0 then fraud_count(fraud_keys, tonumber(fraud_argv[8]), verdict, elevated) end
fixed_windows_count(counter_keys, counter_argv)
local registered = -1
if ARGV[3] ~= '' then registered = registered_mobile(KEYS[6], KEYS[7], ARGV[3]) end
local taken = {0, 0, unpack(sms_reservation_take(mobile_keys, mobile_argv))}
return {verdict, 0, {0, 0}, taken, registered}
