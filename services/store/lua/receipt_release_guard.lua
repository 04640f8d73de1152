--! uses: send_guard
-- A failed delivery frees the mobile at once (the user got nothing: the resend guard must not
-- keep them waiting, e.g. for the voice call the page then offers), but only if the guard is
-- still the one this send set, and once per code lifetime: the first lift leaves a marker for
-- that long, and while it stands no receipt lifts a guard again (else each failed receipt
-- would free the mobile for the next send: back-to-back sends and calls). Counts stay. Both
-- keys carry the {mobile} hash tag: one slot, standalone or Cluster; one script, so
-- concurrent receipts (any process) free the mobile once.
-- KEYS: guard, freed marker. ARGV: the send's guard token, the marker's ttl (s).
-- Returns 1 lifted, 0 not this send's guard (gone, or a newer send's), 2 kept: freed already.
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
if send_guard_release(KEYS[1], ARGV[1]) then
    redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
    return 1
end
return 0
