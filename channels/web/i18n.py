"""The page's words in Chinese (default) and English, and how dates and time limits read.

One flat catalogue per language with the same keys (a test checks they match); templates
call ``_("key", **values)``. A missing key raises, so a typo fails the tests instead of
showing an empty label.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Final, Literal
from zoneinfo import ZoneInfo

from router.timelimit import TimeLimit, TimeUnit

Lang = Literal["zh", "en"]
LANGS: Final[tuple[Lang, ...]] = ("zh", "en")

RATINGS: Final = ("very_satisfied", "satisfied", "neutral", "dissatisfied", "very_dissatisfied")

ZH: Final[dict[str, str]] = {
    "html_lang": "zh-CN",
    "title": "投诉与服务监督",
    "switch_label": "English",
    "switch_lang": "en",
    "nav": "页面导航",
    "nav_complaint": "我要投诉",
    "nav_feedback": "服务监督",
    "nav_progress": "进度查询",
    "skip": "跳到投诉表单",
    "required_note": "带 * 的为必填项。",
    "required_mark": "必填",
    "scope_title": "投诉受理范围",
    "scope_intro": "本页面受理涉及{org}服务的各类投诉，包括但不限于：",
    "process_title": "投诉流程",
    "process_submit": "提交投诉：填写下方投诉表单，详细描述事件发生的时间、地点、相关人员和具体"
    "情况，并上传相关证据（照片、视频、文件等）。",
    "process_accept": "审核受理：我们将在{accept}内审核您的投诉，受理后通过短信或邮件告知受理"
    "情况和投诉编号。",
    "process_handle": "调查处理：受理后一般在{general}内调查核实并处理（重要投诉{important}，"
    "重大投诉{major}）。",
    "process_feedback": "反馈结果：处理完毕后{feedback}内通过短信、邮件或电话向您反馈处理结果。"
    "您也可以在下方“投诉进度查询”中凭投诉编号自助查询。",
    "channels_title": "投诉渠道",
    "channel_online": "网上投诉：填写本页面下方的投诉表单。",
    "channel_phone": "电话投诉：在服务时间（{hours}）拨打服务监督热线 {hotline}。",
    "supervision_title": "服务监督",
    "supervision_text": "为持续提升服务质量、规范工作人员服务行为、维护您的合法权益，我们设立了"
    "服务监督机制。欢迎您填写下方“服务监督反馈表”，对我们的服务进行评价并提出建议。我们将在"
    "{feedback}内处理并答复您的监督反馈。",
    "hours": "周一至周五 {start}–{end}，法定节假日除外",
    "complaint_title": "投诉表单",
    "feedback_title": "服务监督反馈表",
    "progress_title": "投诉进度查询",
    "field_name": "姓名",
    "hint_name": "请填写真实姓名",
    "field_contact": "联系方式",
    "hint_contact": "手机号码或常用电子邮箱，便于我们与您联系",
    "field_incident_at": "事件发生时间",
    "hint_incident_at": "事件发生的具体时间",
    "field_category": "投诉类型",
    "choose_category": "请选择投诉类型",
    "field_details": "投诉详情",
    "hint_details": "请详细描述事件经过、您的诉求等，尽量提供具体信息（时间、地点、相关人员、"
    "具体情况），{min}–{max}字",
    "field_evidence": "证据材料",
    "hint_evidence": "可上传图片、视频、文档：{limits}。最多{files}个文件，合计不超过{total}。",
    "evidence_kind": "{kinds}（每个不超过{size}）",
    "submit_complaint": "提交投诉",
    "field_feedback_name": "姓名（选填）",
    "hint_feedback_name": "可匿名填写",
    "field_feedback_contact": "联系方式（选填）",
    "hint_feedback_contact": "如需我们答复，请填写手机号码或电子邮箱",
    "field_overall": "总体评价",
    "field_aspects": "分项评价（选填）",
    "field_content": "评价内容（选填）",
    "hint_content": "您的服务体验，对具体环节的评价等",
    "field_suggestions": "改进建议（选填）",
    "hint_suggestions": "您认为需要改进的方面和建议",
    "submit_feedback": "提交反馈",
    "rating_very_satisfied": "非常满意",
    "rating_satisfied": "满意",
    "rating_neutral": "一般",
    "rating_dissatisfied": "不满意",
    "rating_very_dissatisfied": "非常不满意",
    "field_number": "投诉编号",
    "field_key": "表单标识",
    "hint_number": "例如 {example}",
    "field_progress_contact": "联系方式",
    "hint_progress_contact": "提交投诉时填写的手机号码或电子邮箱",
    "submit_progress": "查询进度",
    "honeypot": "请勿填写此项",
    "errors_title": "请修改以下问题后重新提交：",
    "colon": "：",
    "files_again": "请重新选择要上传的附件。",
    "hotline_line": "服务监督热线 {hotline}（{hours}）",
    "back": "返回首页",
    # the answer page
    "done_complaint_title": "投诉已提交",
    "done_feedback_title": "反馈已提交",
    "done_number": "您的投诉编号",
    "done_feedback_number": "您的反馈编号",
    "done_keep": "请记下此编号，查询进度或致电热线时需要用到。",
    "done_again": "此表单此前已提交，以下是同一编号，未重复登记。",
    "done_repeat_title": "您的投诉正在处理中",
    "done_repeat": "您就同一事项的投诉已在处理中，投诉编号为 {number}。本次提交未另行登记，"
    "我们已催促承办部门尽快办理。",
    "next_repeat_handle": "该投诉预计{by}前处理完毕；处理进展可随时查询。",
    "next_repeat_of": "此投诉已与您此前已办结的投诉 {number} 关联，我们将重新调查处理。",
    "next_title": "接下来",
    "next_accept": "我们将在{by}前审核并受理您的投诉，并通过{via}告知您。",
    "via_sms": "短信",
    "via_email": "电子邮件",
    "next_handle": "受理后一般在{limit}内调查处理，预计{by}前处理完毕；重大、紧急的投诉会更快。",
    "next_result": "处理完毕后{limit}内，我们会向您反馈处理结果。",
    "next_feedback_reply": "我们将在{limit}内（{by}前）处理并答复您的反馈。",
    "next_feedback_anonymous": "您未留下联系方式，我们会认真研究您的意见，但无法答复您。",
    "progress_link_title": "进度查询链接",
    "progress_link_note": "打开此链接可直接查看处理进度，请妥善保存，不要转发给他人。",
    "contact_line": "如有疑问，请拨打服务监督热线 {hotline}（{hours}）。",
    # progress
    "status": "当前状态",
    "department": "承办部门",
    "due": "办理时限",
    "result": "处理结果",
    "timeline": "办理过程",
    "not_found": "未找到与该编号和联系方式相符的投诉。请核对投诉编号和提交时填写的联系方式。",
    "token_not_found": "此进度链接无效或已失效。您可以凭投诉编号和联系方式查询。",
    "step_received": "已收到",
    "step_accepted": "已受理",
    "step_dispatched": "已派至{department}办理",
    "step_transferred": "已转至{department}办理",
    "step_urged": "已催办",
    "step_handled": "已处理完毕",
    "step_feedback": "已反馈处理结果",
    "step_callback": "已回访",
    "step_closed": "已结案",
    "step_rejected": "不予受理",
    "step_invalid": "无法受理（信息不足或无法联系），如有疑问请致电热线",
    "step_resolved": "已当场办结",
    "step_review": "已复核，重新办理",
    "step_expected_accept": "预计{by}前完成审核受理",
    "status_received": "已收到，待受理",
    "status_accepted": "已受理",
    "status_dispatched": "办理中",
    "status_handled": "已处理，待反馈",
    "status_feedback_given": "已反馈",
    "status_callback_done": "已回访",
    "status_closed": "已结案",
    "status_closed_abnormal": "已结案",
    "status_rejected": "不予受理",
    "status_invalid": "无法受理",
    "a_department": "承办部门",
    # errors of whole requests
    "error_title": "提交未成功",
    "error_rate_limited": "提交过于频繁，请{seconds}秒后再试，或拨打热线。",
    "error_too_large": "提交的内容过大（上限{limit}），请减少或压缩附件后重试。",
    "error_bad_form": "提交的内容无法识别，请返回重新填写。",
    "error_timeout": "上传时间过长，请检查网络后重试。",
    "error_unavailable": "系统繁忙，您的投诉尚未提交成功，请稍后再试或拨打热线。",
    "error_spam": "此次提交被判定为自动提交，未予登记。如您是本人填写，请拨打热线。",
    "error_csrf": "表单已过期或来源无法验证，请重新提交。您填写的内容已保留（附件需重新选择）。",
    # field messages
    "msg_required": "请填写此项",
    "msg_too_long": "不能超过{max}个字",
    "msg_contact": "请填写有效的手机号码或电子邮箱",
    "msg_incident_invalid": "请填写事件发生的日期和时间",
    "msg_incident_future": "事件发生时间不能晚于现在",
    "msg_incident_old": "请核对年份",
    "msg_category": "请从列表中选择投诉类型",
    "msg_details_short": "请至少填写{min}个字，说明事件经过和诉求",
    "msg_details_long": "不能超过{max}个字",
    "msg_rating": "请选择一项评价",
    "msg_key": "表单标识无效，请刷新页面后重新填写",
    "msg_file_type": "“{name}”不是支持的文件类型（支持 {kinds}）",
    "msg_file_type_real": "“{name}”的内容是{real}，不是支持的文件类型（支持 {kinds}）",
    "msg_file_too_large": "“{name}”超过了{limit}",
    "msg_file_total": "“{name}”未能上传：附件合计不能超过{limit}",
    "msg_file_count": "“{name}”未能上传：最多上传{max}个文件",
    "msg_file_empty": "“{name}”是空文件",
    "msg_number": "请填写正确的投诉编号",
    "real_html": "网页或脚本",
    "real_program": "可执行程序",
    "real_gif": "GIF 图片",
    "real_webp": "WebP 图片",
    "real_heic": "HEIC 图片",
    "real_mov": "MOV 视频",
    "real_zip": "压缩包",
    "real_unknown": "未知格式",
    "real_jpg": "JPG 图片",
    "real_png": "PNG 图片",
    "real_mp4": "MP4 视频",
    "real_pdf": "PDF 文档",
    "real_doc": "Word 文档",
    "real_docx": "Word 文档",
}

EN: Final[dict[str, str]] = {
    "html_lang": "en",
    "title": "Complaint and Service Supervision",
    "switch_label": "中文",
    "switch_lang": "zh",
    "nav": "On this page",
    "nav_complaint": "Make a complaint",
    "nav_feedback": "Service supervision",
    "nav_progress": "Check progress",
    "skip": "Skip to the complaint form",
    "required_note": "Fields marked * are required.",
    "required_mark": "required",
    "scope_title": "What we accept",
    "scope_intro": "This page accepts complaints about the services of {org}, including:",
    "process_title": "How a complaint is handled",
    "process_submit": "Submit: fill in the complaint form below; describe when and where it "
    "happened, who was involved and what happened, and upload evidence (photos, videos, "
    "documents).",
    "process_accept": "Review and acceptance: we review your complaint within {accept}, and "
    "tell you by SMS or email that it is accepted and its complaint number.",
    "process_handle": "Investigation and handling: usually within {general} of acceptance "
    "(important complaints {important}, major ones {major}).",
    "process_feedback": "Result: within {feedback} of handling we tell you the result by SMS, "
    "email or phone. You can also check the progress below with your complaint number.",
    "channels_title": "Ways to complain",
    "channel_online": "Online: the complaint form on this page.",
    "channel_phone": "By phone: call the service supervision hotline {hotline} during "
    "service hours ({hours}).",
    "supervision_title": "Service supervision",
    "supervision_text": "To keep improving our service, standardise how our staff serve you "
    "and protect your rights, you can rate our service and make suggestions with the service "
    "supervision feedback form below. We handle and answer feedback within {feedback}.",
    "hours": "Monday to Friday {start}–{end}, except public holidays",
    "complaint_title": "Complaint form",
    "feedback_title": "Service supervision feedback form",
    "progress_title": "Complaint progress inquiry",
    "field_name": "Name",
    "hint_name": "Your real name",
    "field_contact": "Contact",
    "hint_contact": "Mobile number or email address we can reach you at",
    "field_incident_at": "Time of the incident",
    "hint_incident_at": "When it happened",
    "field_category": "Complaint type",
    "choose_category": "Choose a complaint type",
    "field_details": "Details",
    "hint_details": "What happened and what you ask for, as specifically as you can (time, "
    "place, people involved); {min}–{max} characters",
    "field_evidence": "Evidence",
    "hint_evidence": "Pictures, videos and documents: {limits}. Up to {files} files, "
    "{total} in all.",
    "evidence_kind": "{kinds} (up to {size} each)",
    "submit_complaint": "Submit complaint",
    "field_feedback_name": "Name (optional)",
    "hint_feedback_name": "You may stay anonymous",
    "field_feedback_contact": "Contact (optional)",
    "hint_feedback_contact": "Mobile number or email, if you would like a reply",
    "field_overall": "Overall rating",
    "field_aspects": "Rating of specific steps (optional)",
    "field_content": "Your evaluation (optional)",
    "hint_content": "Your experience of our service, of particular steps",
    "field_suggestions": "Suggestions (optional)",
    "hint_suggestions": "What you think we should improve, and how",
    "submit_feedback": "Send feedback",
    "rating_very_satisfied": "Very satisfied",
    "rating_satisfied": "Satisfied",
    "rating_neutral": "Neutral",
    "rating_dissatisfied": "Dissatisfied",
    "rating_very_dissatisfied": "Very dissatisfied",
    "field_number": "Complaint number",
    "field_key": "Form id",
    "hint_number": "For example {example}",
    "field_progress_contact": "Contact",
    "hint_progress_contact": "The mobile number or email you gave with the complaint",
    "submit_progress": "Check progress",
    "honeypot": "Leave this empty",
    "errors_title": "Please correct the following and submit again:",
    "colon": ": ",
    "files_again": "Please choose your files again.",
    "hotline_line": "Service supervision hotline {hotline} ({hours})",
    "back": "Back to the form",
    "done_complaint_title": "Complaint submitted",
    "done_feedback_title": "Feedback sent",
    "done_number": "Your complaint number",
    "done_feedback_number": "Your feedback number",
    "done_keep": "Please keep this number: you need it to check the progress or when you call.",
    "done_again": "This form was submitted before: this is the same number, nothing was filed "
    "twice.",
    "done_repeat_title": "Your complaint is already being handled",
    "done_repeat": "Your complaint about the same matter is already being handled under number "
    "{number}. Nothing new was filed: we have reminded the department handling it.",
    "next_repeat_handle": "It is expected to be handled by {by}; you can check its progress "
    "at any time.",
    "next_repeat_of": "This complaint is linked to your earlier complaint {number}, which was "
    "closed; it will be looked into again.",
    "next_title": "What happens next",
    "next_accept": "We review and accept your complaint by {by}, and tell you by {via}.",
    "via_sms": "SMS",
    "via_email": "email",
    "next_handle": "It is then usually handled within {limit}, expected by {by}; major and "
    "urgent complaints faster.",
    "next_result": "Within {limit} of handling we tell you the result.",
    "next_feedback_reply": "We handle and answer your feedback within {limit} (by {by}).",
    "next_feedback_anonymous": "You left no contact, so we will study your feedback but "
    "cannot answer it.",
    "progress_link_title": "Progress link",
    "progress_link_note": "This link shows the progress directly; keep it and do not share it.",
    "contact_line": "Questions? Call the service supervision hotline {hotline} ({hours}).",
    "status": "Status",
    "department": "Handled by",
    "due": "Due by",
    "result": "Result",
    "timeline": "Progress",
    "not_found": "No complaint matches this number and contact. Please check the complaint "
    "number and the contact you gave when you submitted it.",
    "token_not_found": "This progress link is not valid. You can check the progress with your "
    "complaint number and contact.",
    "step_received": "Received",
    "step_accepted": "Accepted",
    "step_dispatched": "Passed to {department}",
    "step_transferred": "Transferred to {department}",
    "step_urged": "Reminder sent to the handling department",
    "step_handled": "Handled",
    "step_feedback": "Result given to you",
    "step_callback": "Follow-up call made",
    "step_closed": "Closed",
    "step_rejected": "Not accepted",
    "step_invalid": "Could not be accepted (not enough information, or no way to reach you); "
    "call the hotline with questions",
    "step_resolved": "Resolved on first contact",
    "step_review": "Reviewed and reopened",
    "step_expected_accept": "Review and acceptance expected by {by}",
    "status_received": "Received, awaiting acceptance",
    "status_accepted": "Accepted",
    "status_dispatched": "Being handled",
    "status_handled": "Handled, result to be given",
    "status_feedback_given": "Result given",
    "status_callback_done": "Followed up",
    "status_closed": "Closed",
    "status_closed_abnormal": "Closed",
    "status_rejected": "Not accepted",
    "status_invalid": "Could not be accepted",
    "a_department": "the handling department",
    "error_title": "Not submitted",
    "error_rate_limited": "Too many submissions; try again in {seconds} seconds, or call "
    "the hotline.",
    "error_too_large": "The submission is too large (at most {limit}); remove or shrink some "
    "files and try again.",
    "error_bad_form": "The submission could not be read; please go back and fill it in again.",
    "error_timeout": "The upload took too long; check your connection and try again.",
    "error_unavailable": "The system is busy and your complaint was NOT submitted yet; please "
    "try again shortly or call the hotline.",
    "error_spam": "This submission looked automated and was not filed. If you filled it in "
    "yourself, please call the hotline.",
    "error_csrf": "The form expired or its origin could not be verified; please submit it "
    "again. What you typed is kept (files need choosing again).",
    "msg_required": "Please fill this in",
    "msg_too_long": "At most {max} characters",
    "msg_contact": "Enter a valid mobile number or email address",
    "msg_incident_invalid": "Enter the date and time of the incident",
    "msg_incident_future": "The time of the incident cannot be in the future",
    "msg_incident_old": "Please check the year",
    "msg_category": "Choose a complaint type from the list",
    "msg_details_short": "Write at least {min} characters about what happened and what you ask",
    "msg_details_long": "At most {max} characters",
    "msg_rating": "Choose one rating",
    "msg_key": "The form id is not valid; reload the page and fill it in again",
    "msg_file_type": "“{name}” is not an accepted file type (accepted: {kinds})",
    "msg_file_type_real": "“{name}” is {real}, not an accepted file type (accepted: {kinds})",
    "msg_file_too_large": "“{name}” is larger than {limit}",
    "msg_file_total": "“{name}” was not uploaded: all files together may not exceed {limit}",
    "msg_file_count": "“{name}” was not uploaded: at most {max} files",
    "msg_file_empty": "“{name}” is empty",
    "msg_number": "Enter a valid complaint number",
    "real_html": "a web page or script",
    "real_program": "a program",
    "real_gif": "a GIF image",
    "real_webp": "a WebP image",
    "real_heic": "a HEIC image",
    "real_mov": "a MOV video",
    "real_zip": "a ZIP archive",
    "real_unknown": "of an unknown format",
    "real_jpg": "a JPG image",
    "real_png": "a PNG image",
    "real_mp4": "an MP4 video",
    "real_pdf": "a PDF document",
    "real_doc": "a Word document",
    "real_docx": "a Word document",
}

CATALOGUES: Final[dict[str, dict[str, str]]] = {"zh": ZH, "en": EN}


def pick_lang(value: str | None) -> Lang:
    return "en" if (value or "").strip().lower().startswith("en") else "zh"


class Translator:
    def __init__(self, lang: Lang) -> None:
        self.lang: Lang = lang
        self._texts = CATALOGUES[lang]

    def __call__(self, key: str, **values: object) -> str:
        text = self._texts[key]
        return text.format(**values) if values else text


def format_limit(limit: TimeLimit, lang: Lang) -> str:
    """``5 working days`` -> 5个工作日 / 5 working days."""
    amount = int(limit.amount) if limit.amount.is_integer() else limit.amount
    if lang == "zh":
        unit = {
            TimeUnit.WORKING_DAYS: "个工作日",
            TimeUnit.WORKING_HOURS: "个工作小时",
            TimeUnit.HOURS: "小时",
            TimeUnit.MINUTES: "分钟",
            TimeUnit.DAYS: "天",
        }[limit.unit]
        return f"{amount}{unit}"
    singular = {
        TimeUnit.WORKING_DAYS: "working day",
        TimeUnit.WORKING_HOURS: "working hour",
        TimeUnit.HOURS: "hour",
        TimeUnit.MINUTES: "minute",
        TimeUnit.DAYS: "day",
    }[limit.unit]
    return f"{amount} {singular}" + ("" if amount == 1 else "s")


def format_when(value: datetime, zone: ZoneInfo, lang: Lang) -> str:
    local = value.astimezone(zone)
    if lang == "zh":
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"
    return f"{local.day} {local:%b %Y}, {local:%H:%M}"


def format_clock(value: time) -> str:
    return f"{value.hour}:{value.minute:02d}"
