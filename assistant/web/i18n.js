// The page's own words, in the languages the daemon is configured for. The `language` of the
// hello message picks the set; until it arrives the browser's language decides.

const STRINGS = {
  en: {
    title: "Ask me",
    greeting: "Hello! Ask me anything about us.",
    hint: "Hold the button and speak, or type below.",
    hintHandsFree: "Just speak, I'm listening.",
    placeholder: "Type your question…",
    send: "Ask",
    talk: "Hold to talk",
    talking: "Listening… release to send",
    stop: "Stop",
    handsFree: "Hands-free",
    pushToTalk: "Push to talk",
    you: "You",
    assistant: "Assistant",
    sources: "Where this comes from",
    faq: "FAQ",
    document: "Document",
    page: "p. {p}",
    notKnown: "I couldn't find that in what I know.",
    notKnownHint: "Try asking another way, or ask a member of staff.",
    notHelpful: "Not helpful",
    notHelpfulThanks: "Thanks, noted",
    state_idle: "Ready",
    state_listening: "Listening",
    state_transcribing: "Thinking",
    state_thinking: "Thinking",
    state_speaking: "Speaking",
    state_offline: "Offline",
    conn_connecting: "Connecting…",
    conn_open: "Connected",
    conn_waiting: "Reconnecting in {s} s",
    notConnected: "Not connected yet, one moment please.",
    micError: "The microphone isn't available. You can type your question.",
    tapToStart: "Tap to start",
    error: "Something went wrong. Please try again.",
    heardNothing: "I didn't catch anything. Hold the button while you speak.",
  },
  zh: {
    title: "有问题问我",
    greeting: "您好！有什么可以帮您？",
    hint: "按住按钮说话，或在下方输入。",
    hintHandsFree: "请直接说话，我在听。",
    placeholder: "请输入您的问题…",
    send: "提问",
    talk: "按住说话",
    talking: "正在听…松开发送",
    stop: "停止",
    handsFree: "免按键",
    pushToTalk: "按键说话",
    you: "您",
    assistant: "助手",
    sources: "答案出处",
    faq: "常见问题",
    document: "文档",
    page: "第{p}页",
    notKnown: "抱歉，我的资料里没有找到这个问题的答案。",
    notKnownHint: "请换个说法再问，或咨询工作人员。",
    notHelpful: "没有帮助",
    notHelpfulThanks: "谢谢，已记下",
    state_idle: "就绪",
    state_listening: "正在听",
    state_transcribing: "正在思考",
    state_thinking: "正在思考",
    state_speaking: "正在回答",
    state_offline: "离线",
    conn_connecting: "正在连接…",
    conn_open: "已连接",
    conn_waiting: "{s} 秒后重新连接",
    notConnected: "尚未连接，请稍候。",
    micError: "麦克风不可用，您可以输入问题。",
    tapToStart: "轻触开始",
    error: "出了点问题，请再试一次。",
    heardNothing: "没有听到声音。请按住按钮说话。",
  },
};

export function pickLanguage(language) {
  const lang = (language || navigator.language || "en").toLowerCase();
  return lang.startsWith("zh") ? "zh" : "en";
}

export function translator(language) {
  const table = STRINGS[pickLanguage(language)];
  return (key, vars = {}) => {
    let text = table[key] ?? STRINGS.en[key] ?? key;
    for (const [k, v] of Object.entries(vars)) text = text.replace(`{${k}}`, String(v));
    return text;
  };
}
