--! uses: send_guard, fixed_window, sms_code, sms_reservation
-- Reserve a mobile for one send (Redis Cluster: the mobile's step of a send on its own;
-- standalone composes the same pieces into sms_send_reserve.lua): refuse while its resend
-- guard stands or an hourly/daily cap is full; otherwise set the guard, count the send and
-- store the new code (pieces/sms_reservation.lua).
-- KEYS: guard, code, hourly count, daily count. ARGV: guard token, interval, mac, code ttl,
-- hourly limit, hour, daily limit, day.
-- Returns {0, 0, replaced code (mac, tries, expiry ms) if any} or {refusal (1 guard,
-- 2 hourly, 3 daily), ms until it lifts}.
local refusal = sms_reservation_refusal(KEYS, ARGV)
if refusal then return refusal end
return {0, 0, unpack(sms_reservation_take(KEYS, ARGV))}
