# Included by _core.pyx. A Plan (veil.core.plan) compiled once into the C tables a Rewriter's walk reads:
# public tags with a direct table over them (tag hash -> index), repeating-group masks, per-VR defaults, one
# 256-entry action row per private creator block, and the inserted elements encoded for each transfer syntax.
# The tables are freed by Rewriter.__dealloc__.

cdef _compile_inserts(Rewriter rw, plan):
    cdef int i
    elements = sorted(plan.insert, key=lambda e: e[0])
    tags = [int(e[0]) for e in elements]
    if len(set(tags)) != len(tags) or any(t >> 16 in (0x0002, 0xFFFE) or not t & 0xFFFF for t in tags):
        raise PlanError("inserted elements must be distinct data set tags (no File Meta, item or group length)")
    if 0x00080016 in tags or 0x00080018 in tags:
        raise PlanError("SOP Class and SOP Instance UIDs name the instance; the File Meta follows them, so "
                        "a Plan cannot insert them")
    rw.n_ins = len(elements)
    rw.ins_tags = <uint32_t*>malloc(sizeof(uint32_t) * (rw.n_ins + 1))
    if rw.ins_tags == NULL:
        raise MemoryError()
    for i in range(rw.n_ins):
        rw.ins_tags[i] = tags[i]
    rw.ins_bytes = [[encode_inserted(e, explicit, little) for e in elements]
                    for explicit, little in ((False, True), (True, True), (True, False))]


cdef int32_t _value_arg(Rewriter rw, rule) except -2:
    if Action(rule.action) != Action.REPLACE:
        return -1
    if rule.value is None:
        raise PlanError("a REPLACE rule needs a value")
    value = rule.value.encode("utf-8") if isinstance(rule.value, str) else bytes(rule.value)
    rw.values.append(value)
    return len(rw.values) - 1


cdef _compile_tables(Rewriter rw, plan):
    cdef int i
    items = sorted((int(t), r) for t, r in plan.tags.items() if not (int(t) >> 16) & 1)
    rw.n_pub = len(items)
    rw.pub_tags = <uint32_t*>malloc(sizeof(uint32_t) * (rw.n_pub + 1))
    rw.pub_actions = <uint8_t*>malloc(rw.n_pub + 1)
    rw.pub_args = <int32_t*>malloc(sizeof(int32_t) * (rw.n_pub + 1))
    if rw.pub_tags == NULL or rw.pub_actions == NULL or rw.pub_args == NULL:
        raise MemoryError()
    for i, (tag, rule) in enumerate(items):
        rw.pub_tags[i] = tag
        rw.pub_actions[i] = int(Action(rule.action))
        rw.pub_args[i] = _value_arg(rw, rule)
    # The per-element lookup is a direct table (Fibonacci hashing, linear probing), not a binary search.
    cdef int bits = 4
    cdef uint32_t slot
    while (1 << bits) < 2 * rw.n_pub:
        bits += 1
    rw.pub_shift = 32 - bits
    rw.pub_mask = (1 << bits) - 1
    rw.pub_slots = <int32_t*>malloc(sizeof(int32_t) * (rw.pub_mask + 1))
    if rw.pub_slots == NULL:
        raise MemoryError()
    memset(rw.pub_slots, 0xFF, sizeof(int32_t) * (rw.pub_mask + 1))
    for i in range(rw.n_pub):
        slot = tag_slot(rw.pub_tags[i], rw.pub_shift)
        while rw.pub_slots[slot] >= 0:
            slot = (slot + 1) & rw.pub_mask
        rw.pub_slots[slot] = i
    masks = list(plan.masks)
    rw.n_mask = len(masks)
    rw.mask_masks = <uint32_t*>malloc(sizeof(uint32_t) * (rw.n_mask + 1))
    rw.mask_values = <uint32_t*>malloc(sizeof(uint32_t) * (rw.n_mask + 1))
    rw.mask_actions = <uint8_t*>malloc(rw.n_mask + 1)
    rw.mask_args = <int32_t*>malloc(sizeof(int32_t) * (rw.n_mask + 1))
    if rw.mask_masks == NULL or rw.mask_values == NULL or rw.mask_actions == NULL \
            or rw.mask_args == NULL:
        raise MemoryError()
    for i, (mask, value, rule) in enumerate(masks):
        rw.mask_masks[i] = mask
        rw.mask_values[i] = value
        rw.mask_actions[i] = int(Action(rule.action))
        rw.mask_args[i] = _value_arg(rw, rule)
    memset(rw.vr_actions, A_NONE, 676)
    for name, action in plan.vr_defaults.items():
        if len(name) != 2 or vr_slot(vr_code(name)) < 0:
            raise PlanError(f"unknown VR {name!r} in vr_defaults")
        if Action(action) == Action.REPLACE:
            raise PlanError(f"vr_defaults[{name!r}]: REPLACE needs a value; name the tags instead")
        rw.vr_actions[vr_slot(vr_code(name))] = int(Action(action))
    # Private rules: one 256-entry action row per (group, creator) block.
    blocks = {}
    for (group, creator, element), rule in plan.private.items():
        if not (group & 1) or not 0 <= element <= 0xFF:
            raise PlanError(f"private rule ({group:04X},{creator!r},{element:02X}) is not a private element")
        key = (group, creator.rstrip(" \x00").encode("latin-1"))
        blocks.setdefault(key, []).append((element, rule))
    rw.private_index = {}
    nb = len(blocks)
    rw.priv_actions = <uint8_t*>malloc(256 * nb + 1)
    rw.priv_args = <int32_t*>malloc(sizeof(int32_t) * (256 * nb + 1))
    rw.priv_keeps = <uint8_t*>malloc(nb + 1)
    if rw.priv_actions == NULL or rw.priv_args == NULL or rw.priv_keeps == NULL:
        raise MemoryError()
    memset(rw.priv_actions, A_NONE, 256 * nb + 1)
    for b, (key, rules) in enumerate(blocks.items()):
        rw.private_index[key] = b
        rw.priv_keeps[b] = 0
        for element, rule in rules:
            rw.priv_actions[b * 256 + element] = int(Action(rule.action))
            rw.priv_args[b * 256 + element] = _value_arg(rw, rule)
            if Action(rule.action) != Action.REMOVE:
                rw.priv_keeps[b] = 1
