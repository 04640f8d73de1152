--! uses: fraud_window, fraud_segments
-- Admit one send in all of its segments in one atomic step (Redis Cluster: the fraud step
-- of a send on its own; standalone composes the same pieces into sms_send_reserve.lua):
-- judge each segment (a state change is stored even when the send is refused), then refuse
-- the send, counting it nowhere, or count it in every segment.
-- KEYS, ARGV and the reply: fraud_judge in pieces/fraud_segments.lua.
local verdict, elevated = fraud_judge(KEYS, ARGV)
if verdict[1] == 0 then fraud_count(KEYS, tonumber(ARGV[8]), verdict, elevated) end
return verdict
