locals {
  origin_id = "magestack-edge"
  media_id  = "media-s3"
  # CloudFront path patterns are evaluated in order: files first (the same for everyone),
  # then what is never cached, then pages (the default behaviour).
  ordered = concat(
    [for p in var.magestack_cdn.static.path_patterns : { path = p, kind = "static" }],
    [for p in var.magestack_cdn.bypass.path_patterns : { path = p, kind = "bypass" }],
  )
}

################################################################################
# Cache and origin-request policies (from the edge's own rules)
################################################################################

# pub/static and pub/media: no cookie, header or query string, so one copy serves everyone.
resource "aws_cloudfront_cache_policy" "static" {
  name        = "${var.name}-static"
  comment     = "magestack: static and media files, cookies stripped"
  min_ttl     = var.magestack_cdn.static.min_ttl
  default_ttl = var.magestack_cdn.static.default_ttl
  max_ttl     = var.magestack_cdn.static.max_ttl

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_gzip   = true
    enable_accept_encoding_brotli = true

    cookies_config {
      cookie_behavior = "none"
    }
    headers_config {
      header_behavior = "none"
    }
    query_strings_config {
      query_string_behavior = "none"
    }
  }
}

# Pages: keyed by exactly what the edge keys by (never the session cookie). The edge sends
# pages to downstream caches with no-store, as Magento's VCL does, so with min_ttl 0
# CloudFront caches them only if the edge is told to allow it.
resource "aws_cloudfront_cache_policy" "dynamic" {
  name        = "${var.name}-dynamic"
  comment     = "magestack: pages, keyed like the edge's full-page cache"
  min_ttl     = var.magestack_cdn.dynamic.min_ttl
  default_ttl = var.magestack_cdn.dynamic.default_ttl
  max_ttl     = var.magestack_cdn.dynamic.max_ttl

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_gzip   = var.magestack_cdn.dynamic.gzip
    enable_accept_encoding_brotli = var.magestack_cdn.dynamic.brotli

    cookies_config {
      cookie_behavior = "whitelist"
      cookies {
        items = var.magestack_cdn.dynamic.cookies
      }
    }
    headers_config {
      header_behavior = "whitelist"
      headers {
        items = var.magestack_cdn.dynamic.headers
      }
    }
    query_strings_config {
      query_string_behavior = var.magestack_cdn.dynamic.query_strings
    }
  }
}

# Everything reaches Magento (session, form_key, POST bodies), only the whitelist above is
# in the key: the cart of one visitor is never the page of another.
resource "aws_cloudfront_origin_request_policy" "dynamic" {
  name    = "${var.name}-dynamic"
  comment = "magestack: all cookies and query strings to the edge"

  cookies_config {
    cookie_behavior = "all"
  }
  headers_config {
    header_behavior = "allViewer"
  }
  query_strings_config {
    query_string_behavior = "all"
  }
}

data "aws_cloudfront_cache_policy" "disabled" {
  name = "Managed-CachingDisabled"
}

data "aws_cloudfront_origin_request_policy" "all_viewer" {
  name = "Managed-AllViewer"
}

data "aws_secretsmanager_secret_version" "origin_verify" {
  secret_id = var.origin_verify_header_secret_arn
}

################################################################################
# Distribution
################################################################################

resource "aws_cloudfront_distribution" "this" {
  enabled             = true
  is_ipv6_enabled     = true
  http_version        = "http2and3"
  comment             = "${var.name}: Magento through magestack"
  aliases             = var.aliases
  price_class         = var.price_class
  web_acl_id          = aws_wafv2_web_acl.this.arn
  wait_for_deployment = false

  origin {
    origin_id   = local.origin_id
    domain_name = var.origin_domain_name

    custom_origin_config {
      http_port              = 80
      https_port             = 443
      origin_protocol_policy = "https-only"
      origin_ssl_protocols   = ["TLSv1.2"]
      # CloudFront's ceiling without a quota increase. Admin requests that run longer (imports,
      # mass actions: pools.admin.request_timeout_secs) use the admin host, which reaches
      # its own ALB directly (deploy/k8s base/ingress.yaml, idle timeout 3600 s).
      origin_read_timeout = 60
    }

    custom_header {
      name  = "X-Origin-Verify"
      value = data.aws_secretsmanager_secret_version.origin_verify.secret_string
    }
  }

  origin {
    origin_id                = local.media_id
    domain_name              = var.media_bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.media.id
  }

  default_cache_behavior {
    target_origin_id         = local.origin_id
    viewer_protocol_policy   = "redirect-to-https"
    allowed_methods          = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    cached_methods           = ["GET", "HEAD"]
    compress                 = true
    cache_policy_id          = aws_cloudfront_cache_policy.dynamic.id
    origin_request_policy_id = aws_cloudfront_origin_request_policy.dynamic.id
  }

  dynamic "ordered_cache_behavior" {
    for_each = local.ordered
    content {
      path_pattern = ordered_cache_behavior.value.path
      # /media/* straight from the bucket (origin access control): CloudFront asks S3 for the
      # path as the key, and Magento's remote storage keeps pub/media under media/. /pub/media/*
      # (a key nobody writes) and the rest of the static files come from the edges.
      target_origin_id = (ordered_cache_behavior.value.kind == "static" && startswith(ordered_cache_behavior.value.path, "/media/")
      ? local.media_id : local.origin_id)
      viewer_protocol_policy = "redirect-to-https"
      compress               = true
      allowed_methods = (ordered_cache_behavior.value.kind == "static"
        ? ["GET", "HEAD", "OPTIONS"]
      : ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"])
      cached_methods = ["GET", "HEAD"]
      cache_policy_id = (ordered_cache_behavior.value.kind == "static"
        ? aws_cloudfront_cache_policy.static.id
      : data.aws_cloudfront_cache_policy.disabled.id)
      origin_request_policy_id = (ordered_cache_behavior.value.kind == "static"
        ? null
      : data.aws_cloudfront_origin_request_policy.all_viewer.id)
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    acm_certificate_arn      = var.acm_certificate_arn
    ssl_support_method       = "sni-only"
    minimum_protocol_version = "TLSv1.2_2021"
  }

  logging_config {
    bucket          = var.logging_bucket_domain_name
    include_cookies = false
    prefix          = "${var.name}/"
  }

  tags = var.tags
}

# Media from S3, signed by CloudFront (no public bucket, no OAI).
resource "aws_cloudfront_origin_access_control" "media" {
  name                              = "${var.name}-media"
  description                       = "pub/media from the media bucket"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

data "aws_iam_policy_document" "media" {
  statement {
    sid       = "CloudFrontRead"
    actions   = ["s3:GetObject"]
    resources = ["${var.media_bucket_arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudfront_distribution.this.arn]
    }
  }
}

# The bucket belongs to the data stack; its policy names this distribution, so it lives here.
resource "aws_s3_bucket_policy" "media" {
  bucket = element(split(":::", var.media_bucket_arn), 1)
  policy = data.aws_iam_policy_document.media.json
}

################################################################################
# Origin host names: the ALBs the load balancer controller made for the Ingresses
################################################################################

# The controller tags each ALB with its IngressGroup (deploy/k8s base/ingress.yaml); the
# deploy/k8s apply must have run before this stack (docs/aws.md, first apply).
data "aws_lb" "origin" {
  tags = { "ingress.k8s.aws/stack" = var.origin_ingress_group }
}

data "aws_lb" "admin" {
  tags = { "ingress.k8s.aws/stack" = var.admin_ingress_group }
}

resource "aws_route53_record" "origin" {
  zone_id = var.route53_zone_id
  name    = var.origin_domain_name
  type    = "A"
  alias {
    name                   = data.aws_lb.origin.dns_name
    zone_id                = data.aws_lb.origin.zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "admin" {
  zone_id = var.route53_zone_id
  name    = var.admin_domain_name
  type    = "A"
  alias {
    name                   = data.aws_lb.admin.dns_name
    zone_id                = data.aws_lb.admin.zone_id
    evaluate_target_health = true
  }
}

################################################################################
# WAF (CloudFront scope: us-east-1)
################################################################################

resource "aws_wafv2_web_acl" "this" {
  provider = aws.us_east_1
  name     = var.name
  scope    = "CLOUDFRONT"

  default_action {
    allow {}
  }

  # Credential stuffing on the customer login.
  rule {
    name     = "customer-login-rate"
    priority = 10
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.login_rate_limit
        aggregate_key_type = "IP"
        scope_down_statement {
          byte_match_statement {
            search_string         = "/customer/account/loginPost"
            positional_constraint = "CONTAINS"
            field_to_match {
              uri_path {}
            }
            text_transformation {
              priority = 0
              type     = "LOWERCASE"
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-customer-login-rate"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "admin-rate"
    priority = 20
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.admin_rate_limit
        aggregate_key_type = "IP"
        scope_down_statement {
          byte_match_statement {
            search_string         = var.admin_path
            positional_constraint = "STARTS_WITH"
            field_to_match {
              uri_path {}
            }
            text_transformation {
              priority = 0
              type     = "LOWERCASE"
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-admin-rate"
      sampled_requests_enabled   = true
    }
  }

  # The common rule set everywhere but the admin: its SizeRestrictions_BODY (8 KB) and
  # CrossSiteScripting_BODY rules block product and CMS saves (HTML bodies of any size).
  rule {
    name     = "AWSManagedRulesCommonRuleSet"
    priority = 40
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
        scope_down_statement {
          not_statement {
            statement {
              byte_match_statement {
                search_string         = var.admin_path
                positional_constraint = "STARTS_WITH"
                field_to_match {
                  uri_path {}
                }
                text_transformation {
                  priority = 0
                  type     = "LOWERCASE"
                }
              }
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-AWSManagedRulesCommonRuleSet"
      sampled_requests_enabled   = true
    }
  }

  # The same set on the admin path, with the two body rules counted instead of blocking.
  rule {
    name     = "AWSManagedRulesCommonRuleSet-admin"
    priority = 41
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
        rule_action_override {
          name = "CrossSiteScripting_BODY"
          action_to_use {
            count {}
          }
        }
        scope_down_statement {
          byte_match_statement {
            search_string         = var.admin_path
            positional_constraint = "STARTS_WITH"
            field_to_match {
              uri_path {}
            }
            text_transformation {
              priority = 0
              type     = "LOWERCASE"
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-AWSManagedRulesCommonRuleSet-admin"
      sampled_requests_enabled   = true
    }
  }

  dynamic "rule" {
    for_each = {
      AWSManagedRulesAmazonIpReputationList = 30
      AWSManagedRulesSQLiRuleSet            = 60
    }
    content {
      name     = rule.key
      priority = rule.value
      override_action {
        none {}
      }
      statement {
        managed_rule_group_statement {
          vendor_name = "AWS"
          name        = rule.key
        }
      }
      visibility_config {
        cloudwatch_metrics_enabled = true
        metric_name                = "${var.name}-${rule.key}"
        sampled_requests_enabled   = true
      }
    }
  }

  # Known bad inputs, Log4Shell (CVE-2021-44228) among them; a rule of its own so that
  # scanners (and readers) see it.
  rule {
    name     = "AWSManagedRulesKnownBadInputsRuleSet"
    priority = 50
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-AWSManagedRulesKnownBadInputsRuleSet"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  provider                = aws.us_east_1
  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]
}

resource "aws_cloudwatch_log_group" "waf" {
  provider          = aws.us_east_1
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = 365
  kms_key_id        = null
  tags              = var.tags
}

################################################################################
# DNS
################################################################################

resource "aws_route53_record" "alias" {
  for_each = { for pair in setproduct(var.aliases, ["A", "AAAA"]) : "${pair[0]}-${pair[1]}" => pair }

  zone_id = var.route53_zone_id
  name    = each.value[0]
  type    = each.value[1]

  alias {
    name                   = aws_cloudfront_distribution.this.domain_name
    zone_id                = aws_cloudfront_distribution.this.hosted_zone_id
    evaluate_target_health = false
  }
}
