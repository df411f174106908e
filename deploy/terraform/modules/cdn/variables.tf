################################################################################
# Distribution
################################################################################

variable "name" {
  description = "Name prefix of every resource (e.g. `magento-production`)."
  type        = string
}

variable "aliases" {
  description = "Host names the distribution answers (the store's domains)."
  type        = list(string)
}

variable "acm_certificate_arn" {
  description = "ACM certificate in us-east-1 covering `aliases`."
  type        = string
}

variable "origin_domain_name" {
  description = "DNS name of the load balancer in front of the magestack edges."
  type        = string
}

variable "origin_verify_header_secret_arn" {
  description = "Secrets Manager ARN of the value CloudFront sends as `X-Origin-Verify`, so the load balancer can refuse requests that did not come through CloudFront."
  type        = string
}

variable "price_class" {
  description = "CloudFront price class."
  type        = string
  default     = "PriceClass_100"
}

variable "logging_bucket_domain_name" {
  description = "S3 bucket (domain name) for CloudFront standard logs."
  type        = string
}

variable "route53_zone_id" {
  description = "Hosted zone of `aliases`; A and AAAA alias records are created there."
  type        = string
}

################################################################################
# Cache rules (from the edge)
################################################################################

variable "magestack_cdn" {
  description = "Cache rules exported by `magestack cdn export --format terraform` from the edge's config; do not edit by hand."
  type = object({
    static = object({
      path_patterns = list(string)
      min_ttl       = number
      default_ttl   = number
      max_ttl       = number
    })
    dynamic = object({
      cookies       = list(string)
      headers       = list(string)
      query_strings = string
      gzip          = bool
      brotli        = bool
      min_ttl       = number
      default_ttl   = number
      max_ttl       = number
    })
    bypass = object({
      path_patterns = list(string)
    })
  })

  validation {
    condition     = contains(["all", "none"], var.magestack_cdn.dynamic.query_strings)
    error_message = "magestack_cdn.dynamic.query_strings must be \"all\" or \"none\"."
  }

  validation {
    condition     = length(var.magestack_cdn.dynamic.cookies) <= 10 && length(var.magestack_cdn.dynamic.headers) <= 10
    error_message = "CloudFront cache policies take at most 10 cookies and 10 headers."
  }
}

################################################################################
# WAF
################################################################################

variable "admin_path" {
  description = "Magento's admin path (`/<backend frontName>/`), rate-limited per IP."
  type        = string
  default     = "/admin/"
}

variable "login_rate_limit" {
  description = "Requests per 5 minutes per IP to the customer login POST before blocking."
  type        = number
  default     = 100
}

variable "admin_rate_limit" {
  description = "Requests per 5 minutes per IP to the admin path before blocking."
  type        = number
  default     = 300
}

variable "origin_ingress_group" {
  description = "IngressGroup of the storefront's ALB (alb.ingress.kubernetes.io/group.name of deploy/k8s ingress `frontend`)."
  type        = string
}

variable "admin_domain_name" {
  description = "Host name of the admin (its own ALB, not through CloudFront: admin requests may outlast CloudFront's 60 s origin timeout)."
  type        = string
}

variable "admin_ingress_group" {
  description = "IngressGroup of the admin's ALB (deploy/k8s ingress `admin`)."
  type        = string
}

variable "media_bucket_arn" {
  description = "The media bucket (data stack)."
  type        = string
}

variable "media_bucket_regional_domain_name" {
  description = "The media bucket's regional domain name (data stack): the S3 origin of `/media/*`."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
