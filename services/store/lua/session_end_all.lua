-- End every session of a user and revoke every refresh-token family of it (password reset,
-- change of mobile, a deleted user). KEYS: session index, token family index. ARGV: the
-- prefix of the user's session keys, the prefix of the user's family keys.
-- The keys are built here from the indexes, not passed in: read and delete in one step, so a
-- session or family created meanwhile is either listed (and ended) or created after. They
-- carry the indexes' {user_id} hash tag, so the script still touches one slot.
local digests = redis.call('HKEYS', KEYS[1])
for _, digest in ipairs(digests) do redis.call('DEL', ARGV[1] .. digest) end
redis.call('DEL', KEYS[1])
local families = redis.call('HKEYS', KEYS[2])
for _, family in ipairs(families) do redis.call('DEL', ARGV[2] .. family) end
redis.call('DEL', KEYS[2])
return #digests
