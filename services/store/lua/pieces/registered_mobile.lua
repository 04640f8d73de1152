-- Is a mobile registered? The answer of the write-through set of registered numbers
-- (services/accounts/registered.py): 1 registered, 0 not registered, -1 unknown (the set is
-- not ready, or it was evicted: the caller asks MySQL). A 1 is exact; a 0 may be wrong only
-- in the harmless direction (MySQL refuses the registration), which is why a caller that
-- needs a registered number asks MySQL on 0 too.
local function registered_mobile(ready_key, set_key, mobile)
    if redis.call('EXISTS', ready_key) == 0 then return -1 end
    if redis.call('SISMEMBER', set_key, mobile) == 1 then return 1 end
    -- The sentinel "" is in every built set: without it the set was evicted (or never built).
    if redis.call('SISMEMBER', set_key, '') == 0 then return -1 end
    return 0
end
