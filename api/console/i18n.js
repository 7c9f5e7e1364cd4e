// English and Simplified Chinese. The language is the one chosen last (kept in local storage: it is
// not a secret), else zh-CN when the browser prefers Chinese, else English.

export const LANGS = [['en', 'English'], ['zh-CN', '简体中文']];

const en = {
  'app.title': 'cdp console', 'app.console': 'console', 'app.workspace': 'Workspace', 'app.scopes': 'Scopes',
  'app.readonly': 'Read-only token: editing is hidden', 'app.signout': 'Sign out',
  'scope.read': 'read', 'scope.write': 'write', 'scope.admin': 'admin',
  'nav.customer': 'Customers', 'nav.segments': 'Segments', 'nav.catalog': 'Tags & traits', 'nav.quality': 'Data quality', 'nav.live': 'Live',
  'signin.title': 'Sign in to the console', 'signin.hint': 'Paste an API token of your workspace (a read token shows everything; write and admin tokens can also edit).',
  'signin.token': 'API token', 'signin.submit': 'Sign in', 'signin.wrong': 'This token was not accepted: it is unknown or has been revoked. Check it and try again.',
  'signin.storage': 'The token stays in this browser tab only (session storage) and is sent with every API call.',
  'common.loading': 'Loading…', 'common.none': 'Nothing yet.', 'common.prev': 'Previous', 'common.next': 'Next', 'common.page': 'Page {n}',
  'common.yes': 'yes', 'common.no': 'no', 'common.clear': 'Clear', 'common.refresh': 'Refresh',
  'error.forbidden': 'This token may not do that (its scope is too narrow).', 'error.network': 'The server cannot be reached.',
  'customer.title': 'Customer 360', 'customer.find': 'Find customer', 'customer.placeholder': 'Phone, e-mail, member card, user id or profile id',
  'customer.search': 'Search', 'customer.idType': 'Identifier type', 'customer.anyType': 'Any identifier', 'customer.intro': 'Search by any identifier: cdp finds the one customer (OneID) behind it, whichever channel knows them.',
  'customer.notfound': 'No customer has the identifier {value}.', 'customer.mergedAway': '{id} was merged into this profile', 'customer.matched': 'found by {type} {value}',
  'customer.firstSeen': 'First seen', 'customer.lastSeen': 'Last seen', 'customer.events': 'Events', 'customer.reachable': 'Reachable for marketing',
  'customer.invalidIdentifier': 'Kept as sent, not used as an identifier (GET /v1/quality)', 'customer.tags': 'Tags', 'customer.segments': 'Segments', 'customer.since': 'since', 'customer.changedAt': 'changed',
  'customer.removeTag': 'Take the tag off', 'customer.tagName': 'Tag', 'customer.tagValue': 'Value (optional)', 'customer.addTag': 'Add tag', 'customer.noManualTags': 'No manual tags are defined (PUT /v1/tags/{name} with type manual).',
  'customer.identifiers': 'Identifiers', 'customer.type': 'Type', 'customer.value': 'Value', 'customer.traits': 'Traits', 'customer.trait': 'Name',
  'customer.source': 'Source', 'customer.setAt': 'Set at', 'customer.computed': 'Computed traits', 'customer.lastEvent': 'Last event',
  'customer.state': 'State', 'customer.complete': 'complete', 'customer.backfilling': 'backfilling',
  'customer.consentTitle': 'Consent by channel', 'customer.channel': 'Channel', 'customer.purpose': 'Purpose', 'customer.consent': 'Consent',
  'customer.noChoice': 'no choice recorded (not reachable)', 'customer.granted': 'granted', 'customer.revoked': 'revoked',
  'customer.revokedBy': 'revoked by {ids}', 'customer.grant': 'Grant', 'customer.revoke': 'Revoke',
  'customer.counts': 'Event counts', 'customer.byEvent': 'By event', 'customer.byChannel': 'By channel', 'customer.byType': 'By type',
  'customer.why': 'Why is this one customer?', 'customer.timeline': 'Timeline', 'customer.when': 'When', 'customer.event': 'Event', 'customer.details': 'Details',
  'customer.history': 'Membership history', 'customer.at': 'Segments at', 'customer.yesterday': 'Yesterday',
  'customer.recordedAt': 'As recorded then (published)', 'customer.byEventTime': 'By event time, under the current definitions',
  'customer.eventsUpTo': '{n} events up to then', 'customer.segment': 'Segment', 'customer.change': 'Change', 'customer.cause': 'Cause',
  'change.entered': 'entered', 'change.exited': 'exited',
  'channel.sms': 'SMS', 'channel.email': 'E-mail', 'channel.push': 'Push', 'channel.wechat': 'WeChat', 'channel.phone': 'Phone',
  'purpose.marketing': 'marketing', 'purpose.service': 'service', 'purpose.analytics': 'analytics',
  'why.summaryOne': 'One profile: every identifier below was linked to it directly.',
  'why.summaryMerged': '{n} profile(s) were merged into this one: {ids}.',
  'why.identifiers': 'Each identifier and what linked it', 'why.merges': 'Merges and splits', 'why.conflicts': 'Conflicts (kept apart)',
  'why.by': 'by event', 'why.rule': 'rules v{v}', 'why.movedBy': 'moved here by a split ({reason})',
  'why.created': 'Profile {p} created', 'why.linked': '{id} linked to {p}', 'why.mergedVia': '{a} merged into {s} through {id}',
  'why.mergedBy': '{a} merged into {s} by an operator or a rules change: {reason}', 'why.split': '{ids} split off {from} into {into}: {reason}',
  'why.mergeRejected': 'Not merged: {ps} ({reason}; evidence {ids})', 'why.linkRejected': '{id} not linked ({reason})', 'why.commandRejected': 'Command refused: {reason}',
  'builder.title': 'Segment builder', 'builder.conditions': 'Conditions', 'builder.preview': 'Live preview', 'builder.list': 'Saved segments',
  'builder.combine': 'Combine', 'builder.all': 'All of these (and)', 'builder.any': 'Any of these (or)', 'builder.add': 'Add condition',
  'builder.kind': 'Condition type', 'builder.not': 'not', 'builder.remove': 'Remove', 'builder.field': 'Field', 'builder.chooseField': 'Choose a field…',
  'builder.operator': 'Operator', 'builder.value': 'Value', 'builder.betweenHint': 'low,high', 'builder.listHint': 'a,b,c',
  'builder.event': 'Event', 'builder.chooseEvent': 'Choose an event…', 'builder.measure': 'Measure', 'builder.countTimes': 'Count', 'builder.count': 'Count', 'builder.aggregate': 'Aggregate',
  'builder.function': 'Function', 'builder.property': 'Property', 'builder.chooseProperty': 'Choose a property…', 'builder.times': 'Times or amount',
  'builder.window': 'Window', 'builder.windowHint': 'e.g. 30d (empty: all time)', 'builder.where': 'where', 'builder.anyProperty': 'no filter',
  'builder.first': 'First event', 'builder.then': 'Then', 'builder.thenDid': 'then did', 'builder.thenNot': 'and did not do', 'builder.second': 'Second event', 'builder.within': 'within',
  'builder.segment': 'Segment', 'builder.chooseSegment': 'Choose a segment…',
  'builder.startHint': 'Add a condition: the count, spend and a sample appear here as you build.',
  'builder.ofProfiles': 'of {n} profiles ({pct}%)', 'builder.spend': 'Total spend', 'builder.perMember': '{v} per member', 'builder.orders': 'Orders', 'builder.took': 'Evaluated in',
  'builder.sample': 'Sample', 'builder.breakdown': 'Breakdown', 'builder.breakdownBy': 'Break down by', 'builder.noBreakdownChoice': 'No breakdown', 'builder.thenBy': 'then by', 'builder.oneField': 'nothing else',
  'builder.chooseBreakdown': 'Choose a field to see the members and their spend per value.', 'builder.noValue': '(none)', 'builder.total': 'Total',
  'builder.groupsShown': 'The {n} largest of {total} groups.', 'builder.breakdownNote': 'Members and their spend per value, from the same preview as the count; a customer with several values of a field counts in each.',
  'builder.overlap': 'Also in saved segments', 'builder.byEvents': 'Some event conditions were evaluated over every customer\'s events: this preview takes longer.',
  'builder.json': 'Definition (JSON)', 'builder.adminOnly': 'Saving a segment needs an admin token.', 'builder.cannotShow': 'The builder cannot show this definition; here it is as JSON:',
  'builder.segmentId': 'Segment id', 'builder.segmentName': 'Name', 'builder.idHint': 'a-z, 0-9 and _', 'builder.save': 'Save segment',
  'builder.saved': 'Saved {id}: {n} members so far.', 'builder.savedPending': 'Saved; cdp applies it in order and fills it in the background.',
  'builder.members': 'Members', 'builder.status': 'Status', 'builder.definedAt': 'Defined', 'builder.open': 'Open in builder', 'builder.listMembers': 'Members', 'builder.membersOf': 'Members of {id}', 'builder.contact': 'Phone or e-mail',
  'kind.trait': 'Trait', 'kind.computed': 'Computed trait', 'kind.tag': 'Tag', 'kind.event': 'Did an event', 'kind.sequence': 'Sequence', 'kind.consent': 'Reachable (consent)', 'kind.segment': 'In segment', 'kind.group': 'Group',
  'op.eq': 'is', 'op.neq': 'is not', 'op.in': 'is one of', 'op.not_in': 'is none of', 'op.contains': 'contains', 'op.not_contains': 'does not contain',
  'op.starts_with': 'starts with', 'op.is_set': 'is known', 'op.is_not_set': 'is unknown', 'op.gt': '>', 'op.gte': '≥', 'op.lt': '<', 'op.lte': '≤',
  'op.between': 'between', 'op.before': 'before', 'op.after': 'after', 'op.within_last': 'within the last', 'op.not_within_last': 'not within the last',
  'op.is_true': 'is true', 'op.is_false': 'is false', 'op.contains_any': 'contains any of', 'op.contains_all': 'contains all of', 'op.contains_none': 'contains none of',
  'fn.count': 'count', 'fn.sum': 'sum', 'fn.min': 'minimum', 'fn.max': 'maximum', 'fn.average': 'average', 'fn.first': 'first', 'fn.last': 'last',
  'fn.most_frequent': 'most frequent', 'fn.distinct_count': 'distinct count', 'fn.unique_list': 'unique list', 'fn.days_active': 'days active', 'fn.sequence': 'sequence',
  'status.ready': 'ready', 'status.backfilling': 'backfilling', 'status.failed': 'failed', 'status.pending': 'pending',
  'export.title': 'Export members', 'export.segment': 'Segment to export', 'export.channel': 'Consent filter', 'export.anyChannel': 'All members',
  'export.reachableOn': 'Only reachable by {c}', 'export.csv': 'Export CSV', 'export.fields': 'Fields', 'export.progress': '{n} members…', 'export.done': '{n} members exported.',
  'export.note': 'profile_id, since and caused_by come straight from the segment; identifiers and traits are read per member (slower for big segments).',
  'catalog.title': 'Tags & traits', 'catalog.traits': 'Computed traits', 'catalog.name': 'Name', 'catalog.definition': 'Definition', 'catalog.version': 'Version',
  'catalog.window': 'last {w}', 'catalog.sizes': 'Segment sizes, last 30 days', 'catalog.sizesNote': 'Members at the end of each day: the members now, less the enters and exits recorded since.',
  'catalog.tagTotals': '{n} profiles tagged, spending {spend} in all', 'catalog.by.profiles': 'Profiles', 'catalog.by.spend': 'Spend', 'catalog.by.average': 'Per profile',
  'catalog.rfmThresholds': 'RFM cut points', 'catalog.recency': 'Recency (days)', 'catalog.frequency': 'Frequency', 'catalog.monetary': 'Monetary', 'catalog.computedAt': 'Computed',
  'catalog.noTags': 'No tags are defined yet.',
  'tagtype.rule': 'rule', 'tagtype.value': 'value', 'tagtype.rfm': 'RFM', 'tagtype.manual': 'manual',
  'quality.title': 'Data quality', 'quality.byReason': 'Refusals by reason', 'quality.total': '{n} refused messages in all.',
  'quality.quarantine': 'Quarantine', 'quality.received': 'Received', 'quality.source': 'Source', 'quality.code': 'Code', 'quality.field': 'Field', 'quality.reason': 'Reason',
  'quality.payload': 'Message', 'quality.show': 'show', 'quality.findings': 'Data-quality findings', 'quality.count': 'Count', 'quality.findingsTotal': '{n} values kept but not used as identifiers, by field and reason:', 'quality.findingsList': 'Data-quality findings, newest first', 'quality.message': 'Message id',
  'quality.noEndpoint': 'This server does not report data-quality findings yet (GET /v1/quality). Refused messages are in the quarantine below.',
  'quality.conflicts': 'Identity conflicts', 'quality.recorded': 'Recorded', 'quality.decision': 'Decision', 'quality.what': 'What', 'quality.profiles': 'Profiles', 'quality.event': 'Event',
  'decision.merge_rejected': 'merge refused', 'decision.link_rejected': 'link refused', 'decision.command_rejected': 'command refused',
  'live.title': 'Live changes', 'live.connecting': 'connecting', 'live.live': 'live', 'live.reconnecting': 'reconnecting', 'live.pause': 'Pause', 'live.resume': 'Resume',
  'live.changes': 'Latest changes', 'live.waiting': 'Waiting for segment enters and exits and tag changes…', 'live.at': 'At', 'live.kind': 'Change', 'live.what': 'What',
  'live.profile': 'Profile', 'live.cause': 'Cause', 'live.reachable': 'Reachable',
  'live.kind.segment.entered': 'entered segment', 'live.kind.segment.exited': 'left segment', 'live.kind.tag.changed': 'tag changed',
};

const zh = {
  'app.title': 'cdp 控制台', 'app.console': '控制台', 'app.workspace': '工作空间', 'app.scopes': '权限',
  'app.readonly': '只读令牌：已隐藏编辑功能', 'app.signout': '退出登录',
  'scope.read': '读取', 'scope.write': '写入', 'scope.admin': '管理',
  'nav.customer': '客户', 'nav.segments': '人群', 'nav.catalog': '标签与属性', 'nav.quality': '数据质量', 'nav.live': '实时',
  'signin.title': '登录控制台', 'signin.hint': '粘贴本工作空间的 API 令牌（只读令牌可查看全部内容；写入和管理令牌还可以编辑）。',
  'signin.token': 'API 令牌', 'signin.submit': '登录', 'signin.wrong': '令牌无效：它不存在或已被吊销。请检查后重试。',
  'signin.storage': '令牌只保存在当前浏览器标签页（会话存储）中，并随每次 API 调用发送。',
  'common.loading': '加载中…', 'common.none': '暂无数据。', 'common.prev': '上一页', 'common.next': '下一页', 'common.page': '第 {n} 页',
  'common.yes': '是', 'common.no': '否', 'common.clear': '清除', 'common.refresh': '刷新',
  'error.forbidden': '此令牌无权执行该操作（权限不足）。', 'error.network': '无法连接服务器。',
  'customer.title': '客户 360 视图', 'customer.find': '查找客户', 'customer.placeholder': '手机号、邮箱、会员卡号、用户 ID 或档案 ID',
  'customer.search': '搜索', 'customer.idType': '标识类型', 'customer.anyType': '任意标识', 'customer.intro': '可用任意标识搜索：无论哪个渠道认识该客户，cdp 都能找到其背后的唯一客户（OneID）。',
  'customer.notfound': '没有客户拥有标识 {value}。', 'customer.mergedAway': '{id} 已合并到此档案', 'customer.matched': '通过 {type} {value} 找到',
  'customer.firstSeen': '首次出现', 'customer.lastSeen': '最近出现', 'customer.events': '事件数', 'customer.reachable': '可营销触达渠道',
  'customer.invalidIdentifier': '按原样保存，未用作身份标识（GET /v1/quality）', 'customer.tags': '标签', 'customer.segments': '所属人群', 'customer.since': '加入于', 'customer.changedAt': '变更于',
  'customer.removeTag': '移除标签', 'customer.tagName': '标签', 'customer.tagValue': '值（可选）', 'customer.addTag': '添加标签', 'customer.noManualTags': '尚未定义手动标签（PUT /v1/tags/{name}，type 为 manual）。',
  'customer.identifiers': '标识', 'customer.type': '类型', 'customer.value': '值', 'customer.traits': '属性', 'customer.trait': '名称',
  'customer.source': '来源', 'customer.setAt': '设置时间', 'customer.computed': '计算属性', 'customer.lastEvent': '最近事件',
  'customer.state': '状态', 'customer.complete': '已完成', 'customer.backfilling': '回填中',
  'customer.consentTitle': '各渠道授权', 'customer.channel': '渠道', 'customer.purpose': '用途', 'customer.consent': '授权',
  'customer.noChoice': '未记录选择（不可触达）', 'customer.granted': '已授权', 'customer.revoked': '已撤回',
  'customer.revokedBy': '由 {ids} 撤回', 'customer.grant': '授权', 'customer.revoke': '撤回',
  'customer.counts': '事件统计', 'customer.byEvent': '按事件', 'customer.byChannel': '按渠道', 'customer.byType': '按类型',
  'customer.why': '为什么是同一个客户？', 'customer.timeline': '行为时间线', 'customer.when': '时间', 'customer.event': '事件', 'customer.details': '详情',
  'customer.history': '人群进出历史', 'customer.at': '指定时间的人群', 'customer.yesterday': '昨天',
  'customer.recordedAt': '当时的记录（已发布）', 'customer.byEventTime': '按事件时间，依据当前定义',
  'customer.eventsUpTo': '截至当时共 {n} 个事件', 'customer.segment': '人群', 'customer.change': '变化', 'customer.cause': '原因',
  'change.entered': '进入', 'change.exited': '退出',
  'channel.sms': '短信', 'channel.email': '邮件', 'channel.push': '推送', 'channel.wechat': '微信', 'channel.phone': '电话',
  'purpose.marketing': '营销', 'purpose.service': '服务', 'purpose.analytics': '分析',
  'why.summaryOne': '单一档案：下列每个标识都直接关联到此档案。',
  'why.summaryMerged': '有 {n} 个档案合并到了此档案：{ids}。',
  'why.identifiers': '每个标识及其关联依据', 'why.merges': '合并与拆分', 'why.conflicts': '冲突（保持分开）',
  'why.by': '由事件', 'why.rule': '规则 v{v}', 'why.movedBy': '由拆分移至此处（{reason}）',
  'why.created': '创建档案 {p}', 'why.linked': '{id} 关联到 {p}', 'why.mergedVia': '{a} 通过 {id} 合并到 {s}',
  'why.mergedBy': '{a} 由运营人员或规则变更合并到 {s}：{reason}', 'why.split': '{ids} 从 {from} 拆分到 {into}：{reason}',
  'why.mergeRejected': '未合并：{ps}（{reason}；证据 {ids}）', 'why.linkRejected': '{id} 未关联（{reason}）', 'why.commandRejected': '命令被拒绝：{reason}',
  'builder.title': '人群圈选', 'builder.conditions': '条件', 'builder.preview': '实时预估', 'builder.list': '已保存的人群',
  'builder.combine': '组合方式', 'builder.all': '满足全部（且）', 'builder.any': '满足任一（或）', 'builder.add': '添加条件',
  'builder.kind': '条件类型', 'builder.not': '非', 'builder.remove': '删除', 'builder.field': '字段', 'builder.chooseField': '选择字段…',
  'builder.operator': '运算符', 'builder.value': '值', 'builder.betweenHint': '下限,上限', 'builder.listHint': 'a,b,c',
  'builder.event': '事件', 'builder.chooseEvent': '选择事件…', 'builder.measure': '度量', 'builder.countTimes': '次数', 'builder.count': '人数', 'builder.aggregate': '聚合',
  'builder.function': '函数', 'builder.property': '属性', 'builder.chooseProperty': '选择属性…', 'builder.times': '次数或金额',
  'builder.window': '时间窗', 'builder.windowHint': '如 30d（留空为全部时间）', 'builder.where': '筛选', 'builder.anyProperty': '不筛选',
  'builder.first': '先发生的事件', 'builder.then': '之后', 'builder.thenDid': '之后做了', 'builder.thenNot': '之后没有做', 'builder.second': '后续事件', 'builder.within': '时限',
  'builder.segment': '人群', 'builder.chooseSegment': '选择人群…',
  'builder.startHint': '添加一个条件：构建过程中，这里会实时显示人数、消费额和样本。',
  'builder.ofProfiles': '占 {n} 个档案的 {pct}%', 'builder.spend': '累计消费', 'builder.perMember': '人均 {v}', 'builder.orders': '订单数', 'builder.took': '计算耗时',
  'builder.sample': '样本', 'builder.breakdown': '分布', 'builder.breakdownBy': '分布维度', 'builder.noBreakdownChoice': '不看分布', 'builder.thenBy': '再按', 'builder.oneField': '不再细分',
  'builder.chooseBreakdown': '选择一个字段，查看每个取值的人数和消费额。', 'builder.noValue': '（无）', 'builder.total': '合计',
  'builder.groupsShown': '共 {total} 组，显示人数最多的 {n} 组。', 'builder.breakdownNote': '每个取值的人数及其消费额，与人数来自同一次预估；一个字段有多个取值的客户计入每个取值。',
  'builder.overlap': '同时属于已保存人群', 'builder.byEvents': '部分事件条件需要逐个客户读取事件来计算，因此本次预估较慢。',
  'builder.json': '定义（JSON）', 'builder.adminOnly': '保存人群需要管理令牌。', 'builder.cannotShow': '圈选器无法展示此定义，以下为 JSON：',
  'builder.segmentId': '人群 ID', 'builder.segmentName': '名称', 'builder.idHint': '仅限 a-z、0-9 和 _', 'builder.save': '保存人群',
  'builder.saved': '已保存 {id}：目前 {n} 人。', 'builder.savedPending': '已保存；cdp 将按顺序应用并在后台计算成员。',
  'builder.members': '人数', 'builder.status': '状态', 'builder.definedAt': '定义时间', 'builder.open': '在圈选器中打开', 'builder.listMembers': '成员', 'builder.membersOf': '{id} 的成员', 'builder.contact': '手机号或邮箱',
  'kind.trait': '属性', 'kind.computed': '计算属性', 'kind.tag': '标签', 'kind.event': '发生过事件', 'kind.sequence': '行为序列', 'kind.consent': '可触达（授权）', 'kind.segment': '属于人群', 'kind.group': '条件组',
  'op.eq': '等于', 'op.neq': '不等于', 'op.in': '属于', 'op.not_in': '不属于', 'op.contains': '包含', 'op.not_contains': '不包含',
  'op.starts_with': '开头是', 'op.is_set': '有值', 'op.is_not_set': '无值', 'op.gt': '>', 'op.gte': '≥', 'op.lt': '<', 'op.lte': '≤',
  'op.between': '介于', 'op.before': '早于', 'op.after': '晚于', 'op.within_last': '在最近', 'op.not_within_last': '不在最近',
  'op.is_true': '为真', 'op.is_false': '为假', 'op.contains_any': '包含任一', 'op.contains_all': '包含全部', 'op.contains_none': '都不包含',
  'fn.count': '次数', 'fn.sum': '求和', 'fn.min': '最小值', 'fn.max': '最大值', 'fn.average': '平均值', 'fn.first': '首次', 'fn.last': '最近一次',
  'fn.most_frequent': '最常见', 'fn.distinct_count': '去重计数', 'fn.unique_list': '去重列表', 'fn.days_active': '活跃天数', 'fn.sequence': '序列',
  'status.ready': '就绪', 'status.backfilling': '回填中', 'status.failed': '失败', 'status.pending': '等待中',
  'export.title': '导出成员', 'export.segment': '要导出的人群', 'export.channel': '授权筛选', 'export.anyChannel': '全部成员',
  'export.reachableOn': '仅限可通过{c}触达', 'export.csv': '导出 CSV', 'export.fields': '字段', 'export.progress': '已读取 {n} 人…', 'export.done': '已导出 {n} 人。',
  'export.note': 'profile_id、since 和 caused_by 直接来自人群；标识和属性需逐个读取成员档案（大人群较慢）。',
  'catalog.title': '标签与属性', 'catalog.traits': '计算属性', 'catalog.name': '名称', 'catalog.definition': '定义', 'catalog.version': '版本',
  'catalog.window': '最近 {w}', 'catalog.sizes': '人群规模（最近 30 天）', 'catalog.sizesNote': '每天结束时的人数：当前人数减去此后记录的进入、加上此后记录的退出。',
  'catalog.tagTotals': '共 {n} 个档案带有此标签，累计消费 {spend}', 'catalog.by.profiles': '人数', 'catalog.by.spend': '消费额', 'catalog.by.average': '人均',
  'catalog.rfmThresholds': 'RFM 分界点', 'catalog.recency': '最近消费（天）', 'catalog.frequency': '消费频次', 'catalog.monetary': '消费金额', 'catalog.computedAt': '计算时间',
  'catalog.noTags': '尚未定义任何标签。',
  'tagtype.rule': '规则', 'tagtype.value': '分层', 'tagtype.rfm': 'RFM', 'tagtype.manual': '手动',
  'quality.title': '数据质量', 'quality.byReason': '按原因统计的拒收', 'quality.total': '共 {n} 条被拒收的消息。',
  'quality.quarantine': '隔离区', 'quality.received': '接收时间', 'quality.source': '来源', 'quality.code': '代码', 'quality.field': '字段', 'quality.reason': '原因',
  'quality.payload': '消息', 'quality.show': '查看', 'quality.findings': '数据质量问题', 'quality.count': '数量', 'quality.findingsTotal': '共 {n} 个值已保留但未用作身份标识，按字段和原因统计：', 'quality.findingsList': '数据质量问题（最新在前）', 'quality.message': '消息 ID',
  'quality.noEndpoint': '此服务器暂不提供数据质量报告（GET /v1/quality）。被拒收的消息见下方隔离区。',
  'quality.conflicts': '身份冲突', 'quality.recorded': '记录时间', 'quality.decision': '决定', 'quality.what': '内容', 'quality.profiles': '档案', 'quality.event': '事件',
  'decision.merge_rejected': '拒绝合并', 'decision.link_rejected': '拒绝关联', 'decision.command_rejected': '拒绝命令',
  'live.title': '实时变化', 'live.connecting': '连接中', 'live.live': '实时', 'live.reconnecting': '重新连接中', 'live.pause': '暂停', 'live.resume': '继续',
  'live.changes': '最新变化', 'live.waiting': '等待人群进出和标签变化…', 'live.at': '时间', 'live.kind': '变化', 'live.what': '内容',
  'live.profile': '档案', 'live.cause': '原因', 'live.reachable': '可触达',
  'live.kind.segment.entered': '进入人群', 'live.kind.segment.exited': '退出人群', 'live.kind.tag.changed': '标签变化',
};

const DICTS = { en, 'zh-CN': zh };
const STORE = 'cdp.lang';

function initial() {
  const saved = localStorage.getItem(STORE);
  if (saved && DICTS[saved]) return saved;
  const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const p of prefs) {
    const l = p.toLowerCase();
    if (l.startsWith('zh')) return 'zh-CN';
    if (l.startsWith('en')) return 'en';
  }
  return 'en';
}

let current = initial();

export const lang = () => current;

export function setLang(code) {
  if (!DICTS[code]) return;
  current = code;
  localStorage.setItem(STORE, code);
  window.dispatchEvent(new CustomEvent('cdp:lang'));
}

/// The text of `key` in the current language with `{name}` filled from `vars`; English, then the key's
/// last part, when a text is missing.
export function t(key, vars) {
  let s = DICTS[current][key] ?? en[key] ?? key.split('.').pop();
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined ? m : String(vars[k])));
  return s;
}

export const KEYS = { en: Object.keys(en), zh: Object.keys(zh) };
