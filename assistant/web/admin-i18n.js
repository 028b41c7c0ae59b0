// The owner's page's own words, in both languages (as i18n.js holds the avatar page's).

import { pickLanguage } from "./i18n.js";

const STRINGS = {
  en: {
    title: "Owner's page",
    otherLanguage: "中文",
    loginTitle: "Log in",
    loginHint: "Enter the owner's token ([admin] token). It is not the kiosk's token.",
    tokenLabel: "Owner's token",
    login: "Log in",
    daysTitle: "Unanswered turns per day (UTC), and their share of all turns",
    dayLabel: "{day}: {n} unanswered of {turns} turns ({rate})",
    rateUnknown: "–",
    queueTitle: "What visitors asked that the kiosk could not answer",
    refresh: "Refresh",
    empty: "Nothing waits for you: every question was answered.",
    phrasings: "Phrasings",
    said: "The assistant said:",
    questionLabel: "Question of the new entry",
    answerLabel: "Answer",
    writeAnswer: "Save as a new entry",
    candidatesLabel: "Or add these phrasings to an existing entry",
    addPhrasings: "Add the phrasings",
    dismiss: "Dismiss",
    noCandidates: "(no FAQ entry came close)",
    meta: "Asked {n} times · {langs} · first {first} · last {last}",
    phrasingCount: "{q} ({n}×)",
    candidate: "{title} ({id}, {score})",
    conn_connecting: "Connecting…",
    conn_open: "Connected",
    conn_waiting: "Reconnecting…",
    done_answer: "Saved as entry {entry}.",
    done_add: "Phrasings added to entry {entry}.",
    done_dismiss: "Dismissed.",
    applied_reloaded: " It is live now.",
    applied_pending: " It applies after `assistant kb build` and a restart of the daemon.",
    applied_failed: " Saved, but the reload failed: {why}",
    "err_owner-disabled": "The owner's page is off. Set a token: ASSISTANT__ADMIN__TOKEN=$(openssl rand -hex 24) in the daemon's environment (or [admin] token in assistant.toml), then restart the daemon.",
    "err_owner-token": "That is not the owner's token.",
    err_forbidden: "Log in first.",
    "err_stale-group": "That group changed or was handled in another tab; here is the queue as it is now.",
    "err_kb-duplicate": "That question is already in the knowledge base: add the phrasings to its entry instead. ({msg})",
    "err_empty-answer": "Write an answer first.",
    "err_unknown-entry": "That entry is no longer in the knowledge base.",
    err_other: "It did not work: {msg}",
  },
  zh: {
    title: "管理页",
    otherLanguage: "English",
    loginTitle: "登录",
    loginHint: "请输入管理员令牌（[admin] token），它不是展台的令牌。",
    tokenLabel: "管理员令牌",
    login: "登录",
    daysTitle: "每天未答上的问答次数（UTC）及其占全部问答的比例",
    dayLabel: "{day}：{turns} 次问答中 {n} 次未答上（{rate}）",
    rateUnknown: "–",
    queueTitle: "访客问过、展台没答上的问题",
    refresh: "刷新",
    empty: "没有待处理的问题：所有问题都答上了。",
    phrasings: "各种问法",
    said: "助手的回答：",
    questionLabel: "新条目的问题",
    answerLabel: "答案",
    writeAnswer: "保存为新条目",
    candidatesLabel: "或把这些问法加到已有条目",
    addPhrasings: "添加问法",
    dismiss: "忽略",
    noCandidates: "（没有相近的问答条目）",
    meta: "被问 {n} 次 · {langs} · 最早 {first} · 最近 {last}",
    phrasingCount: "{q}（{n} 次）",
    candidate: "{title}（{id}，{score}）",
    conn_connecting: "正在连接…",
    conn_open: "已连接",
    conn_waiting: "正在重新连接…",
    done_answer: "已保存为条目 {entry}。",
    done_add: "问法已加到条目 {entry}。",
    done_dismiss: "已忽略。",
    applied_reloaded: "现已生效。",
    applied_pending: "运行 `assistant kb build` 并重启服务后生效。",
    applied_failed: "已保存，但重新加载失败：{why}",
    "err_owner-disabled": "管理页未启用。请设置令牌：在服务的环境中设 ASSISTANT__ADMIN__TOKEN=$(openssl rand -hex 24)（或在 assistant.toml 里设 [admin] token），然后重启服务。",
    "err_owner-token": "管理员令牌不对。",
    err_forbidden: "请先登录。",
    "err_stale-group": "这一组已变化或已在另一个标签页处理；下面是现在的队列。",
    "err_kb-duplicate": "知识库里已有这个问题：请把问法加到那个条目。（{msg}）",
    "err_empty-answer": "请先写答案。",
    "err_unknown-entry": "知识库里已没有这个条目。",
    err_other: "没有成功：{msg}",
  },
};

export function adminTranslator(language) {
  const lang = pickLanguage(language);
  const table = STRINGS[lang];
  const t = (key, vars = {}) => {
    let text = table[key] ?? STRINGS.en[key] ?? key;
    for (const [k, v] of Object.entries(vars)) text = text.replace(`{${k}}`, String(v));
    return text;
  };
  t.lang = lang;
  return t;
}
