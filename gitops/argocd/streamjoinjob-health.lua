-- Argo CD health check of streamjoin.dev/StreamJoinJob (Lua 5.1, as Argo CD runs it).
-- Rules (the same for Flux, docs/gitops.md):
--   1. no status yet, or status.observedGeneration behind metadata.generation, or a
--      condition written for an older generation: Progressing (the operator has not
--      acted on the latest spec yet);
--   2. Degraded=True: Degraded;
--   3. Ready=True: Healthy;
--   4. Ready=False because the job is suspended or scaled to zero on purpose: Suspended;
--   5. anything else (rolling out, scaling, pods not ready): Progressing.
local hs = {}

local function condition(status, type_)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local generation = obj.metadata and obj.metadata.generation
local status = obj.status

if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report the job's status"
  return hs
end

if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
    .. " (status describes " .. tostring(status.observedGeneration) .. ")"
  return hs
end

if generation ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.observedGeneration ~= nil and c.observedGeneration < generation then
      hs.status = "Progressing"
      hs.message = "Condition " .. tostring(c.type) .. " describes generation "
        .. tostring(c.observedGeneration) .. ", not " .. tostring(generation)
      return hs
    end
  end
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "The job is degraded")
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "All runtime pods are ready")
  return hs
end

if ready ~= nil and (ready.reason == "Suspended" or ready.reason == "ScaledToZero") then
  hs.status = "Suspended"
  hs.message = describe(ready, "The job is suspended")
  return hs
end

local progressing = condition(status, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing, "The job is rolling out")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the runtime pods to be ready")
return hs
