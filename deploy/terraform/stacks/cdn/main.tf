# The data stack's outputs: the media bucket (S3 origin) and the log bucket.
data "terraform_remote_state" "data" {
  backend = "s3"
  config = {
    bucket = var.state_bucket
    key    = "data/terraform.tfstate"
    region = var.region
  }
}

module "cdn" {
  source = "../../modules/cdn"

  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name                              = var.name
  aliases                           = var.aliases
  acm_certificate_arn               = var.acm_certificate_arn
  origin_domain_name                = var.origin_domain_name
  origin_verify_header_secret_arn   = var.origin_verify_header_secret_arn
  logging_bucket_domain_name        = data.terraform_remote_state.data.outputs.logs_bucket_domain_name
  media_bucket_arn                  = data.terraform_remote_state.data.outputs.media_bucket_arn
  media_bucket_regional_domain_name = data.terraform_remote_state.data.outputs.media_bucket_regional_domain_name
  origin_ingress_group              = var.origin_ingress_group
  admin_domain_name                 = var.admin_domain_name
  admin_ingress_group               = var.admin_ingress_group
  route53_zone_id                   = var.route53_zone_id
  admin_path                        = var.admin_path
  magestack_cdn                     = var.magestack_cdn
  tags                              = var.tags
}

output "distribution_id" {
  description = "CloudFront distribution id."
  value       = module.cdn.distribution_id
}
