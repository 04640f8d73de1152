--! uses: send_guard
-- A failed delivery frees the mobile at once (the user got nothing: the resend guard must not
-- keep them waiting), but only if the guard is still the one this send set. Counts stay.
-- KEYS: guard. ARGV: the send's guard token. Returns 1 if lifted.
if send_guard_release(KEYS[1], ARGV[1]) then return 1 end
return 0
