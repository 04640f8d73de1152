--! uses: send_guard, fixed_window, sms_code, sms_reservation
-- Undo a reservation whose SMS was not sent, if it still stands (its guard holds its token):
-- lift the guard, put back the code it replaced, give back its place in the hourly and daily
-- counts. Safe to repeat: a reservation is released at most once.
-- KEYS: guard, code, hourly count, daily count. ARGV: guard token, mac, then the replaced
-- code's mac, tries and expiry (ms) if there was one.
return sms_reservation_release(KEYS, ARGV)
