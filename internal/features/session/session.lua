-- The session transition, applied atomically to one entity's state hash.
-- It must implement exactly transition() in session.go (see the package
-- documentation); TestDifferential compares the two.
--
-- KEYS[1]  the entity's state hash: id, start, last, count, and for
--          deduplication (the idRecord of session.go) one field
--          'i:' .. event id = time per id counted, n their number and
--          floor (a time; absent when none)
-- ARGV[1]  event time, Unix nanoseconds, canonical decimal, >= 0
-- ARGV[2]  session timeout, nanoseconds, canonical decimal, > 0
-- ARGV[3]  state TTL, milliseconds
-- ARGV[4]  entity id
-- ARGV[5]  event id, '' for none
-- ARGV[6]  the most ids kept (Config.DedupeIDs), > 0
--
-- Reply: {0, id, start, last, count, is_new, ''} when applied;
--        {1, id, start, last, count, 0, ''} when the event precedes the
--        start of the current session (nothing written);
--        {3, id, start, last, count, 0, ''} when the session already
--        counted the event id (nothing written);
--        {4, id, start, last, count, 0, floor} when the event has an id and
--        is at or before floor (nothing written);
--        {2, reason} when the stored state is malformed (nothing written).
--
-- Lua numbers are doubles, exact only below 2^53, and Unix nanoseconds
-- reach 2^63; so times stay decimal strings and are compared and added as
-- (seconds, nanoseconds) pairs, each exact.

local function split(s)
  local n = #s
  if n <= 9 then
    return 0, tonumber(s)
  end
  return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))
end

-- before reports whether a < b.
local function before(as, an, bs, bn)
  return as < bs or (as == bs and an < bn)
end

local function digits(s)
  return type(s) == 'string' and #s >= 1 and #s <= 19 and string.match(s, '^%d+$') ~= nil
end

-- lt reports whether a < b for canonical decimals.
local function lt(a, b)
  return #a < #b or (#a == #b and a < b)
end

local key, t, entity, eid, maxids = KEYS[1], ARGV[1], ARGV[4], ARGV[5], tonumber(ARGV[6])
local ts, tn = split(t)
local h = redis.call('HMGET', key, 'id', 'start', 'last', 'count', 'n', 'floor')
local id, start, last, count = h[1], h[2], h[3], h[4]
local n, floor = 0, h[6]
local isnew = 0

if not id and not start and not last and not count then
  isnew = 1 -- first event, or the state expired
else
  if not (type(id) == 'string' and #id == 32 and digits(start) and digits(last) and digits(count)) then
    return {2, 'fields id, start, last, count missing or malformed'}
  end
  if (h[5] and not digits(h[5])) or (floor and not digits(floor)) then
    return {2, 'fields n or floor malformed'}
  end
  n = tonumber(h[5] or '0')
  local ss, sn = split(start)
  local ls, ln = split(last)
  count = tonumber(count)
  if eid ~= '' and redis.call('HEXISTS', key, 'i:' .. eid) == 1 then
    return {3, id, start, last, count, 0, ''}
  end
  if before(ts, tn, ss, sn) then
    return {1, id, start, last, count, 0, ''}
  end
  if eid ~= '' and floor and not lt(floor, t) then
    return {4, id, start, last, count, 0, floor}
  end
  if before(ts, tn, ls, ln) then
    count = count + 1 -- late but inside the session: last stays
  else
    local os, on = split(ARGV[2])
    local es, en = ls + os, ln + on
    if en >= 1000000000 then
      es, en = es + 1, en - 1000000000
    end
    if before(ts, tn, es, en) then -- t - last < timeout
      last, count = t, count + 1
    else
      isnew = 1
    end
  end
end

-- Past maxids, the older half of the ids goes (idRecord.add): every id at
-- or before cut, the ceil(n/2)-th smallest time, this event's included.
-- Read and checked before anything is written.
local cut, all = nil, nil
if eid ~= '' and isnew == 0 and n + 1 > maxids then
  all = redis.call('HGETALL', key)
  local times = {t}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'i:' then
      if not digits(all[i + 1]) then
        return {2, 'field ' .. all[i] .. ' malformed'}
      end
      times[#times + 1] = all[i + 1]
    end
  end
  table.sort(times, lt)
  cut = times[math.floor((#times + 1) / 2)]
end

if isnew == 1 then
  id = string.sub(redis.sha1hex(entity .. '\0' .. t), 1, 32)
  start, last, count = t, t, 1
  if n > 0 or floor then
    redis.call('DEL', key) -- the previous session's ids
  end
  n, floor = 0, nil
end
if eid == '' then
  redis.call('HSET', key, 'id', id, 'start', start, 'last', last, 'count', string.format('%d', count))
else
  n = n + 1
  redis.call('HSET', key, 'id', id, 'start', start, 'last', last, 'count', string.format('%d', count), 'i:' .. eid, t, 'n', n)
  if cut then
    local drop = {}
    for i = 1, #all, 2 do
      if string.sub(all[i], 1, 2) == 'i:' and not lt(cut, all[i + 1]) then
        drop[#drop + 1] = all[i]
      end
    end
    if not lt(cut, t) then
      drop[#drop + 1] = 'i:' .. eid
    end
    redis.call('HDEL', key, unpack(drop)) -- never empty: cut is one of the times
    n = n - #drop
    if not floor or lt(floor, cut) then
      floor = cut
    end
    redis.call('HSET', key, 'floor', floor, 'n', n)
  end
end
redis.call('PEXPIRE', key, ARGV[3])
return {0, id, start, last, count, isnew, ''}
